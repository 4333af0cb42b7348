// CUDA kernels of the fused synthesis. Same algebra as the CPU kernels (csrc/synthesis_math.h):
// the image statistics come from the spectrum by Parseval, and the image standardization backward
// folds into the spectrum pass, so each direction is one FFT plus a few elementwise kernels.
//
// Per-sample reductions are two-stage (block partials, then one fixed-order sum per sample), so
// results are deterministic, and every statistic stays on the device: no host sync anywhere,
// which lets a whole optimization step be captured in a CUDA graph. The FFTs go through ATen's
// cuFFT path (at::_fft_c2r/_fft_r2c), which caches plans per shape, dtype and device and runs on
// the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../synthesis_checks.h"
#include "../synthesis_math.h"

namespace phasevis {
namespace {

using math::Standardization;
using math::TailGrad;
using SynthesisOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

constexpr int kThreads = 256;
// Channel counts up to this keep a pixel's channels in registers in the image kernels (RGB: 3).
constexpr int kRegisterChannels = 4;
constexpr int kMaxPartials = 3;

// Blocks per sample for a grid-stride loop over n elements: enough to fill the GPU, few enough
// that the second reduction stage stays trivial.
int blocks_per_sample(int64_t n, int64_t batch) {
  const int64_t wanted = (n + kThreads * 4 - 1) / (kThreads * 4);
  const int64_t cap = std::max<int64_t>(1, 1024 / std::max<int64_t>(1, batch));
  return int(std::max<int64_t>(1, std::min<int64_t>(wanted, std::min<int64_t>(cap, 256))));
}

// Reduces K doubles over the block and stores them at out[0..K) (thread 0).
template <int K>
__device__ void block_sum_store(double (&v)[K], double* out) {
  __shared__ double shared[K][kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    for (int offset = 16; offset > 0; offset /= 2) v[j] += __shfl_down_sync(0xffffffffu, v[j], offset);
    if (lane == 0) shared[j][warp] = v[j];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < K; ++j) {
      double s = lane < blockDim.x / 32 ? shared[j][lane] : 0.0;
      for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
      if (lane == 0) out[j] = s;
    }
  }
}

// Second stage: totals[b, j] = Σ_blocks partials[b, block, j], in a fixed order.
template <int K>
__global__ void sum_partials_kernel(const double* __restrict partials, int blocks, double* __restrict totals) {
  const int b = blockIdx.x;
  double v[K];
#pragma unroll
  for (int j = 0; j < K; ++j) v[j] = 0.0;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x)
#pragma unroll
    for (int j = 0; j < K; ++j) v[j] += partials[(int64_t(b) * blocks + i) * K + j];
  block_sum_store<K>(v, totals + int64_t(b) * K);
}

template <int K>
at::Tensor sum_partials(const at::Tensor& partials, int64_t batch, int blocks) {
  at::Tensor totals = at::empty({batch, K}, partials.options());
  sum_partials_kernel<K><<<batch, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(partials.data_ptr<double>(),
                                                                                   blocks, totals.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return totals;
}

// ---------------------------------------------------------------------------
// Heads: how a spectrum bin X is made from the parameters, and the chain rule back to them.
// ---------------------------------------------------------------------------

template <typename T>
struct MacoHead {
  static constexpr bool kComplex = false;
  const T* phase;      // (B, C, H, Wr)
  const T* magnitude;  // (C, H, Wr) or (B, C, H, Wr)
  int64_t magnitude_stride;

  __device__ void value(const Standardization& s, int64_t b, int64_t n, int64_t i, int64_t, T* re, T* im) const {
    T sn, cs;
    math::fast_sincos(T((double(phase[b * n + i]) - s.mean_re) * s.inv_t), &sn, &cs);
    math::maco_spectrum(magnitude[b * magnitude_stride + i], sn, cs, re, im);
  }
  // ∂L/∂φ̂ from ∂L/∂X at element i; returns it and adds Σg, Σg·φ̂ to acc.
  __device__ void grad(const Standardization& s, int64_t b, int64_t n, int64_t i, int64_t, T g_re, T g_im, T* out,
                       double* acc) const {
    const T ph = T((double(phase[b * n + i]) - s.mean_re) * s.inv_t);
    T sn, cs;
    math::fast_sincos(ph, &sn, &cs);
    const T g = math::maco_phase_grad(magnitude[b * magnitude_stride + i], sn, cs, g_re, g_im);
    out[b * n + i] = g;
    acc[0] += g;
    acc[2] += double(g) * ph;
  }
};

template <typename T>
struct FourierHead {
  static constexpr bool kComplex = true;
  const T* spectrum;  // (B, C, H, Wr, 2)
  const T* scale;     // (H, Wr)

  __device__ void value(const Standardization& s, int64_t b, int64_t n, int64_t i, int64_t hk, T* re,
                        T* im) const {
    const T f = T(s.inv_t) * scale[hk];
    *re = T(double(spectrum[(b * n + i) * 2]) - s.mean_re) * f;
    *im = T(double(spectrum[(b * n + i) * 2 + 1]) - s.mean_im) * f;
  }
  __device__ void grad(const Standardization& s, int64_t b, int64_t n, int64_t i, int64_t hk, T g_re, T g_im,
                       T* out, double* acc) const {
    const T zr = T((double(spectrum[(b * n + i) * 2]) - s.mean_re) * s.inv_t);
    const T zi = T((double(spectrum[(b * n + i) * 2 + 1]) - s.mean_im) * s.inv_t);
    g_re *= scale[hk];
    g_im *= scale[hk];
    out[(b * n + i) * 2] = g_re;
    out[(b * n + i) * 2 + 1] = g_im;
    acc[0] += g_re;
    acc[1] += g_im;
    acc[2] += double(g_re) * zr + double(g_im) * zi;
  }
};

__device__ Standardization standardization_of(const double* totals, int64_t n, double eps) {
  return math::standardization_from_sums(totals[0], totals[1], totals[2], n, eps);
}

// ---------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------

template <typename T, bool kComplex>
__global__ void moments_kernel(const T* __restrict v, int64_t n, double* __restrict partials) {
  const int64_t b = blockIdx.y;
  double acc[3] = {0.0, 0.0, 0.0};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (kComplex) {
      const double re = v[(b * n + i) * 2], im = v[(b * n + i) * 2 + 1];
      acc[0] += re;
      acc[1] += im;
      acc[2] += re * re + im * im;
    } else {
      const double x = v[b * n + i];
      acc[0] += x;
      acc[2] += x * x;
    }
  }
  block_sum_store<3>(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

// X from the head, with the image moments by Parseval: Σ_k w_k|F_k|² and Σ_c Re X_c[0, 0].
template <typename T, typename Head>
__global__ void spectrum_kernel(Head head, Geometry g, const double* __restrict head_totals, double eps,
                                T* __restrict x, double* __restrict head_stats, double* __restrict partials) {
  const int64_t b = blockIdx.y, n = g.spectrum_numel(), wr = g.half_width;
  const Standardization s = standardization_of(head_totals + b * 3, n, eps);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const int cols = Head::kComplex ? 3 : 2;
    head_stats[b * cols] = s.mean_re;
    if (Head::kComplex) head_stats[b * cols + 1] = s.mean_im;
    head_stats[b * cols + cols - 1] = s.std;
  }
  double acc[2] = {0.0, 0.0};  // Σ w|F|², Σ Re X[0, 0]
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % wr, h = (i / wr) % g.height, hk = h * wr + k;
    T re, im;
    head.value(s, b, n, i, hk, &re, &im);
    if (math::is_self_conjugate_column(k, g.width)) {
      // Stored already Hermitian: cuFFT's c2r, unlike MKL's, is not the projection for a
      // non-Hermitian input when W = 1.
      const int64_t p = math::conjugate_row(h, g.height), pi = i + (p - h) * wr;
      T pre, pim;
      head.value(s, b, n, pi, p * wr + k, &pre, &pim);
      math::hermitian_part(re, im, pre, pim, &re, &im);
      acc[0] += double(re) * re + double(im) * im;
      if (hk == 0) acc[1] += re;
    } else {
      acc[0] += 2.0 * (double(re) * re + double(im) * im);
    }
    x[(b * n + i) * 2] = re;
    x[(b * n + i) * 2 + 1] = im;
  }
  block_sum_store<2>(acc, partials + (b * gridDim.x + blockIdx.x) * 2);
}

__device__ Standardization image_standardization_of(const double* totals, const Geometry& g, double eps) {
  const double plane = double(g.height * g.width);
  return math::standardization_from_sums(totals[1], 0.0, totals[0] / plane, g.image_numel(), eps);
}

// x holds the unnormalized inverse transform (H·W times the image): the 1/(H·W) is applied here
// instead of in a separate ATen pass. kMaxC > 0: channels fit in registers (C <= kMaxC), so each
// pixel's channels are read once and x̂ and out written once; kMaxC == 0: any C, through memory.
template <typename T, int kMaxC>
__global__ void image_forward_kernel(T* __restrict x, T* __restrict out, const T* __restrict k, Geometry g,
                                     const double* __restrict image_totals, double eps, T input_scale, T lo, T span,
                                     double* __restrict image_stats) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const int c_count = int(g.channels);
  const Standardization s = image_standardization_of(image_totals + b * 2, g, eps);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    image_stats[b * 2] = s.mean_re;
    image_stats[b * 2 + 1] = s.std;
  }
  const T mean = T(s.mean_re), inv_t = T(s.inv_t);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < plane; p += int64_t(gridDim.x) * blockDim.x) {
    T* xs = x + b * c_count * plane + p;
    T* os = out + b * c_count * plane + p;
    if constexpr (kMaxC > 0) {
      T v[kMaxC];
#pragma unroll
      for (int c = 0; c < kMaxC; ++c)
        if (c < c_count) {
          v[c] = (xs[c * plane] * input_scale - mean) * inv_t;
          xs[c * plane] = v[c];
        }
#pragma unroll
      for (int d = 0; d < kMaxC; ++d)
        if (d < c_count) {
          T y = 0;
#pragma unroll
          for (int c = 0; c < kMaxC; ++c)
            if (c < c_count) y += v[c] * __ldg(k + c * c_count + d);
          os[d * plane] = lo + span * math::sigmoid(y);
        }
    } else {
      for (int c = 0; c < c_count; ++c) xs[c * plane] = (xs[c * plane] * input_scale - mean) * inv_t;
      for (int d = 0; d < c_count; ++d) {
        T y = 0;
        for (int c = 0; c < c_count; ++c) y += xs[c * plane] * k[c * c_count + d];
        os[d * plane] = lo + span * math::sigmoid(y);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------

// kMaxC as in image_forward_kernel: with registers, ∂L/∂x̂ is accumulated in registers and
// stored once instead of read-modified-written C times per pixel.
template <typename T, int kMaxC>
__global__ void image_backward_kernel(const T* __restrict grad_out, const T* __restrict x_hat, T* __restrict grad_x,
                                      const T* __restrict k, Geometry g, T span, double* __restrict partials) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const int c_count = int(g.channels);
  double acc[2] = {0.0, 0.0};  // Σ∂L/∂x̂, Σ∂L/∂x̂·x̂
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < plane; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = b * c_count * plane + p;
    if constexpr (kMaxC > 0) {
      T xh[kMaxC], gx[kMaxC];
#pragma unroll
      for (int c = 0; c < kMaxC; ++c) {
        xh[c] = c < c_count ? x_hat[base + c * plane] : T(0);
        gx[c] = 0;
      }
#pragma unroll
      for (int d = 0; d < kMaxC; ++d)
        if (d < c_count) {
          T y = 0;
#pragma unroll
          for (int c = 0; c < kMaxC; ++c)
            if (c < c_count) y += xh[c] * __ldg(k + c * c_count + d);
          const T sg = math::sigmoid(y);
          const T gy = grad_out[base + d * plane] * span * sg * (T(1) - sg);
#pragma unroll
          for (int c = 0; c < kMaxC; ++c)
            if (c < c_count) gx[c] += __ldg(k + c * c_count + d) * gy;
        }
#pragma unroll
      for (int c = 0; c < kMaxC; ++c)
        if (c < c_count) {
          grad_x[base + c * plane] = gx[c];
          acc[0] += gx[c];
          acc[1] += double(gx[c]) * xh[c];
        }
    } else {
      for (int c = 0; c < c_count; ++c) grad_x[base + c * plane] = 0;
      for (int d = 0; d < c_count; ++d) {
        T y = 0;
        for (int c = 0; c < c_count; ++c) y += x_hat[base + c * plane] * k[c * c_count + d];
        const T sg = math::sigmoid(y);
        const T gy = grad_out[base + d * plane] * span * sg * (T(1) - sg);
        for (int c = 0; c < c_count; ++c) grad_x[base + c * plane] += k[c * c_count + d] * gy;
      }
      for (int c = 0; c < c_count; ++c) {
        const T gc = grad_x[base + c * plane];
        acc[0] += gc;
        acc[1] += double(gc) * x_hat[base + c * plane];
      }
    }
  }
  block_sum_store<2>(acc, partials + (b * gridDim.x + blockIdx.x) * 2);
}

// ∂L/∂v̂ from G = rfft2(∂L/∂x̂), with the image standardization backward folded in.
template <typename T, typename Head>
__global__ void spectrum_grad_kernel(Head head, Geometry g, const T* __restrict big_g,
                                     const double* __restrict head_stats, const double* __restrict image_stats,
                                     const double* __restrict image_grad_totals, double eps, T* __restrict grad,
                                     double* __restrict partials) {
  const int64_t b = blockIdx.y, n = g.spectrum_numel(), wr = g.half_width;
  const int cols = Head::kComplex ? 3 : 2;
  Standardization s;
  s.mean_re = head_stats[b * cols];
  s.mean_im = Head::kComplex ? head_stats[b * cols + 1] : 0.0;
  s.std = head_stats[b * cols + cols - 1];
  s.inv_t = 1.0 / (s.std + eps);
  Standardization img;
  img.mean_re = image_stats[b * 2];
  img.mean_im = 0.0;
  img.std = image_stats[b * 2 + 1];
  img.inv_t = 1.0 / (img.std + eps);
  const double plane = double(g.height * g.width);
  const auto sg = math::standardization_grad(image_grad_totals[b * 2], 0.0, image_grad_totals[b * 2 + 1],
                                             g.image_numel(), img);
  const TailGrad interior{2.0 / plane, sg.scale, sg.along * img.inv_t, sg.shift_re, img.mean_re * plane};
  TailGrad self_conjugate = interior;
  self_conjugate.weight_over_hw = 1.0 / plane;

  double acc[3] = {0.0, 0.0, 0.0};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % wr, h = (i / wr) % g.height, hk = h * wr + k;
    T re, im, g_re, g_im;
    head.value(s, b, n, i, hk, &re, &im);
    const T G_re = big_g[(b * n + i) * 2], G_im = big_g[(b * n + i) * 2 + 1];
    if (math::is_self_conjugate_column(k, g.width)) {
      const int64_t p = math::conjugate_row(h, g.height);
      T pre, pim, fre, fim;
      head.value(s, b, n, i + (p - h) * wr, p * wr + k, &pre, &pim);
      math::hermitian_part(re, im, pre, pim, &fre, &fim);
      math::tail_spectrum_grad(self_conjugate, hk == 0, G_re, G_im, fre, fim, &g_re, &g_im);
    } else {
      math::tail_spectrum_grad(interior, false, G_re, G_im, re, im, &g_re, &g_im);
    }
    head.grad(s, b, n, i, hk, g_re, g_im, grad, acc);
  }
  block_sum_store<3>(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

// g_v = scale·g + shift + along·v̂, in place.
template <typename T, bool kComplex>
__global__ void head_standardization_grad_kernel(const T* __restrict v, T* __restrict grad, int64_t n,
                                                 const double* __restrict head_stats,
                                                 const double* __restrict totals, double eps) {
  const int64_t b = blockIdx.y;
  const int cols = kComplex ? 3 : 2;
  Standardization s;
  s.mean_re = head_stats[b * cols];
  s.mean_im = kComplex ? head_stats[b * cols + 1] : 0.0;
  s.std = head_stats[b * cols + cols - 1];
  s.inv_t = 1.0 / (s.std + eps);
  const auto sg = math::standardization_grad(totals[b * 3], totals[b * 3 + 1], totals[b * 3 + 2], n, s);
  const T scale = T(sg.scale), along = T(sg.along), inv_t = T(s.inv_t);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (kComplex) {
      const int64_t j = (b * n + i) * 2;
      grad[j] = scale * grad[j] + T(sg.shift_re) + along * ((v[j] - T(s.mean_re)) * inv_t);
      grad[j + 1] = scale * grad[j + 1] + T(sg.shift_im) + along * ((v[j + 1] - T(s.mean_im)) * inv_t);
    } else {
      const int64_t j = b * n + i;
      grad[j] = scale * grad[j] + T(sg.shift_re) + along * ((v[j] - T(s.mean_re)) * inv_t);
    }
  }
}

// ---------------------------------------------------------------------------
// Host drivers
// ---------------------------------------------------------------------------

at::Tensor workspace(const at::Tensor& like, int64_t batch, int blocks, int columns) {
  return at::empty({batch, blocks, columns}, like.options().dtype(at::kDouble));
}

template <typename T, typename Head>
SynthesisOutputs forward(const Head& head, const at::Tensor& head_values, const Geometry& g,
                         const at::Tensor& color_matrix, double lo, double hi, double eps) {
  auto stream = c10::cuda::getCurrentCUDAStream();
    const int64_t n = g.spectrum_numel(), plane = g.height * g.width;
  const int nb = blocks_per_sample(n, g.batch);
  const dim3 grid(nb, g.batch);

  at::Tensor partials = workspace(head_values, g.batch, nb, 3);
  moments_kernel<T, Head::kComplex><<<grid, kThreads, 0, stream>>>(head_values.data_ptr<T>(), n,
                                                                    partials.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor head_totals = sum_partials<3>(partials, g.batch, nb);

  at::Tensor spectrum = at::empty({g.batch, g.channels, g.height, g.half_width},
                                  head_values.options().dtype(c10::toComplexType(head_values.scalar_type())));
  at::Tensor head_stats = at::empty({g.batch, Head::kComplex ? 3 : 2}, head_values.options().dtype(at::kDouble));
  at::Tensor energy = workspace(head_values, g.batch, nb, 2);
  spectrum_kernel<T, Head><<<grid, kThreads, 0, stream>>>(head, g, head_totals.data_ptr<double>(), eps,
                                                          reinterpret_cast<T*>(spectrum.data_ptr()),
                                                          head_stats.data_ptr<double>(), energy.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor image_totals = sum_partials<2>(energy, g.batch, nb);

  // Unnormalized c2r (fft_norm_mode::none): torch.fft.irfft2's 1/(H·W) would be one more pass
  // over the image; image_forward_kernel applies it while reading.
  at::Tensor x = at::_fft_c2r(spectrum, at::IntArrayRef{2, 3}, /*normalization=*/0, g.width).contiguous();
  at::Tensor out = at::empty_like(x);
  at::Tensor image_stats = at::empty({g.batch, 2}, head_stats.options());
  const int ib = blocks_per_sample(plane, g.batch);
  const T input_scale = T(1.0 / double(plane));
  const auto launch = [&](auto kernel) {
    kernel<<<dim3(ib, g.batch), kThreads, 0, stream>>>(x.data_ptr<T>(), out.data_ptr<T>(), color_matrix.data_ptr<T>(),
                                                       g, image_totals.data_ptr<double>(), eps, input_scale, T(lo),
                                                       T(hi - lo), image_stats.data_ptr<double>());
  };
  if (g.channels <= kRegisterChannels) {
    launch(image_forward_kernel<T, kRegisterChannels>);
  } else {
    launch(image_forward_kernel<T, 0>);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, x, head_stats, image_stats};
}

template <typename T, typename Head>
at::Tensor backward(const Head& head, const at::Tensor& head_values, const Geometry& g, const at::Tensor& grad_out,
                    const at::Tensor& x_hat, const at::Tensor& head_stats, const at::Tensor& image_stats,
                    const at::Tensor& color_matrix, double lo, double hi, double eps) {
  auto stream = c10::cuda::getCurrentCUDAStream();
    const int64_t n = g.spectrum_numel(), plane = g.height * g.width;

  const at::Tensor go = grad_out.contiguous(), xh = x_hat.contiguous();
  at::Tensor grad_x = at::empty_like(xh);
  const int ib = blocks_per_sample(plane, g.batch);
  at::Tensor image_partials = workspace(head_values, g.batch, ib, 2);
  const auto launch = [&](auto kernel) {
    kernel<<<dim3(ib, g.batch), kThreads, 0, stream>>>(go.data_ptr<T>(), xh.data_ptr<T>(), grad_x.data_ptr<T>(),
                                                       color_matrix.data_ptr<T>(), g, T(hi - lo),
                                                       image_partials.data_ptr<double>());
  };
  if (g.channels <= kRegisterChannels) {
    launch(image_backward_kernel<T, kRegisterChannels>);
  } else {
    launch(image_backward_kernel<T, 0>);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor image_grad_totals = sum_partials<2>(image_partials, g.batch, ib);
  // Unnormalized r2c, as torch.fft.rfft2's default "backward" norm is, without its wrappers.
  const at::Tensor big_g =
      at::_fft_r2c(grad_x, at::IntArrayRef{2, 3}, /*normalization=*/0, /*onesided=*/true).contiguous();

  const int nb = blocks_per_sample(n, g.batch);
  const dim3 grid(nb, g.batch);
  at::Tensor grad = at::empty_like(head_values);
  at::Tensor partials = workspace(head_values, g.batch, nb, 3);
  const at::Tensor hs = head_stats.contiguous(), is = image_stats.contiguous();
  spectrum_grad_kernel<T, Head><<<grid, kThreads, 0, stream>>>(
      head, g, reinterpret_cast<const T*>(big_g.const_data_ptr()), hs.data_ptr<double>(), is.data_ptr<double>(),
      image_grad_totals.data_ptr<double>(), eps, grad.data_ptr<T>(), partials.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor totals = sum_partials<3>(partials, g.batch, nb);
  head_standardization_grad_kernel<T, Head::kComplex><<<grid, kThreads, 0, stream>>>(
      head_values.data_ptr<T>(), grad.data_ptr<T>(), n, hs.data_ptr<double>(), totals.data_ptr<double>(), eps);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad;
}

SynthesisOutputs maco_synthesis_cuda(const at::Tensor& phase_in, const at::Tensor& magnitude_in, int64_t height,
                                     int64_t width, double lo, double hi, const at::Tensor& color_matrix,
                                     double eps) {
  const Geometry g =
      check_forward_args(Head::kMaco, phase_in, magnitude_in, height, width, color_matrix, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(phase_in.device());
  const at::Tensor phase = phase_in.contiguous(), k = color_matrix.contiguous();
  const auto magnitude = per_sample_or_shared(magnitude_in, g, "magnitude");
  return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis_cuda", [&] {
    const MacoHead<scalar_t> head{phase.data_ptr<scalar_t>(), magnitude.first.data_ptr<scalar_t>(), magnitude.second};
    return forward<scalar_t>(head, phase, g, k, lo, hi, eps);
  });
}

at::Tensor maco_synthesis_backward_cuda(const at::Tensor& grad_out, const at::Tensor& phase_in,
                                        const at::Tensor& magnitude_in, const at::Tensor& x_hat,
                                        const at::Tensor& phase_stats, const at::Tensor& image_stats,
                                        const at::Tensor& color_matrix, double lo, double hi, double eps) {
  const Geometry g = check_backward_args(Head::kMaco, grad_out, phase_in, magnitude_in, x_hat, phase_stats,
                                         image_stats, color_matrix, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(phase_in.device());
  const at::Tensor phase = phase_in.contiguous(), k = color_matrix.contiguous();
  const auto magnitude = per_sample_or_shared(magnitude_in, g, "magnitude");
  return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis_backward_cuda", [&] {
    const MacoHead<scalar_t> head{phase.data_ptr<scalar_t>(), magnitude.first.data_ptr<scalar_t>(), magnitude.second};
    return backward<scalar_t>(head, phase, g, grad_out, x_hat, phase_stats, image_stats, k, lo, hi, eps);
  });
}

SynthesisOutputs fourier_synthesis_cuda(const at::Tensor& spectrum_in, const at::Tensor& scale_in, int64_t height,
                                        int64_t width, double lo, double hi, const at::Tensor& color_matrix,
                                        double eps) {
  const Geometry g = check_forward_args(Head::kFourier, spectrum_in, scale_in, height, width, color_matrix,
                     c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(spectrum_in.device());
  const at::Tensor z = spectrum_in.contiguous(), k = color_matrix.contiguous();
  const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
  return AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fourier_synthesis_cuda", [&] {
    const FourierHead<scalar_t> head{z.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>()};
    return forward<scalar_t>(head, z, g, k, lo, hi, eps);
  });
}

at::Tensor fourier_synthesis_backward_cuda(const at::Tensor& grad_out, const at::Tensor& spectrum_in,
                                           const at::Tensor& scale_in, const at::Tensor& x_hat,
                                           const at::Tensor& spectrum_stats, const at::Tensor& image_stats,
                                           const at::Tensor& color_matrix, double lo, double hi, double eps) {
  const Geometry g = check_backward_args(Head::kFourier, grad_out, spectrum_in, scale_in, x_hat,
                                         spectrum_stats, image_stats, color_matrix, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(spectrum_in.device());
  const at::Tensor z = spectrum_in.contiguous(), k = color_matrix.contiguous();
  const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
  return AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fourier_synthesis_backward_cuda", [&] {
    const FourierHead<scalar_t> head{z.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>()};
    return backward<scalar_t>(head, z, g, grad_out, x_hat, spectrum_stats, image_stats, k, lo, hi, eps);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, CUDA, m) {
  m.impl("maco_synthesis", &maco_synthesis_cuda);
  m.impl("maco_synthesis_backward", &maco_synthesis_backward_cuda);
  m.impl("fourier_synthesis", &fourier_synthesis_cuda);
  m.impl("fourier_synthesis_backward", &fourier_synthesis_backward_cuda);
}

}  // namespace phasevis
