// CUDA kernels of the fused synthesis. The per-thread work is the chunk functions of
// csrc/synthesis_chunks.h, which the CPU op runs too: the image statistics come from the spectrum
// by Parseval, and the image standardization backward folds into the spectrum pass, so each
// direction is one FFT plus a few elementwise kernels.
//
// Per-sample reductions are two-stage (block partials, then one fixed-order sum per sample), so
// results are deterministic, and every statistic stays on the device: no host sync anywhere,
// which lets a whole optimization step be captured in a CUDA graph. The FFTs are cuFFT 2-D plans
// on scratch buffers (csrc/cuda/fft.cu), cached per shape, precision and device, on the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "../synthesis_checks.h"
#include "../synthesis_chunks.h"
#include "../synthesis_math.h"
#include "../synthesis_ops.h"
#include "fft.h"

namespace phasevis {
namespace {

using math::Standardization;

constexpr int kThreads = 256;
// Channel counts up to this keep a pixel's channels in registers in the image kernels (RGB: 3).
constexpr int kRegisterChannels = 4;

// Blocks per sample for a grid-stride loop over `chunks` chunks: one chunk per thread while that
// fits, else about one full-occupancy wave of the whole GPU shared by the samples (a cap that
// keeps the second reduction stage trivial).
int multiprocessor_count() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  static std::array<std::atomic<int>, 64> known{};  // per device; 0: not asked yet
  const bool cached = device >= 0 && device < int(known.size());
  if (cached && known[device].load(std::memory_order_relaxed) > 0) return known[device].load(std::memory_order_relaxed);
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  if (cached) known[device].store(count, std::memory_order_relaxed);
  return count;
}

int blocks_per_sample(int64_t chunks, int64_t batch) {
  const int64_t wanted = (chunks + kThreads - 1) / kThreads;
  const int64_t resident = int64_t(multiprocessor_count()) * (2048 / kThreads);
  const int64_t cap = std::max<int64_t>(1, resident / std::max<int64_t>(1, batch));
  return int(std::max<int64_t>(1, std::min(wanted, cap)));
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

// The chunks' sums as the block reductions and the partials hold them: rows of doubles.
__device__ void block_sum_store(const chunks::Sums& s, double* out) {
  double v[3] = {s.re, s.im, s.dot};
  block_sum_store<3>(v, out);
}
__device__ void block_sum_store(const chunks::SpectrumEnergy& e, double* out) {
  double v[2] = {e.weighted_sq, e.dc};
  block_sum_store<2>(v, out);
}
__device__ chunks::Sums stored_sums(const double* row) { return {row[0], row[1], row[2]}; }
__device__ chunks::SpectrumEnergy stored_energy(const double* row) { return {row[0], row[1]}; }

template <int K>
at::Tensor sum_partials(const at::Tensor& partials, int64_t batch, int blocks) {
  at::Tensor totals = at::empty({batch, K}, partials.options());
  sum_partials_kernel<K><<<batch, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(partials.data_ptr<double>(),
                                                                                   blocks, totals.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return totals;
}

// ---------------------------------------------------------------------------
// Kernels: grid-stride loops over the chunks of csrc/synthesis_chunks.h, one sample per grid row
// (blockIdx.y), each block's sums stored as partials for sum_partials.
// ---------------------------------------------------------------------------

// First element of this thread's first chunk, and the stride between its chunks.
template <int V>
__device__ int64_t first_chunk() {
  return (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
}
template <int V>
__device__ int64_t chunk_stride() {
  return int64_t(gridDim.x) * blockDim.x * V;
}

template <typename T, bool kComplex, int V>
__global__ void moments_kernel(const T* __restrict v, int64_t n, double* __restrict partials) {
  const int64_t b = blockIdx.y;
  chunks::Sums acc;
  for (int64_t i = first_chunk<V>(); i < n; i += chunk_stride<V>()) chunks::moments_chunk<V, kComplex>(v, n, b, i, acc);
  block_sum_store(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

// X from the head, with the image moments by Parseval; block 0 stores the head's statistics.
template <typename T, typename Head, int V>
__global__ void spectrum_kernel(Head head, Geometry g, const double* __restrict head_totals, double eps,
                                T* __restrict x, double* __restrict head_stats, double* __restrict partials) {
  const int64_t b = blockIdx.y, n = g.spectrum_numel();
  const Standardization s = chunks::head_standardization(stored_sums(head_totals + b * 3), n, eps);
  if (blockIdx.x == 0 && threadIdx.x == 0)
    chunks::store_standardization(s, Head::kComplex, head_stats + b * (Head::kComplex ? 3 : 2));
  chunks::SpectrumEnergy acc;
  for (int64_t i = first_chunk<V>(); i < n; i += chunk_stride<V>())
    chunks::spectrum_chunk<V>(head, g, s, b, i, chunks::SpectrumCursor(i, g), x, acc);
  block_sum_store(acc, partials + (b * gridDim.x + blockIdx.x) * 2);
}

// The color matrix in registers, zero past C.
template <typename T>
__device__ void load_color_matrix(const T* __restrict k, int channels, T (&kk)[kRegisterChannels][kRegisterChannels]) {
#pragma unroll
  for (int c = 0; c < kRegisterChannels; ++c)
#pragma unroll
    for (int d = 0; d < kRegisterChannels; ++d)
      kk[c][d] = (c < channels && d < channels) ? __ldg(k + c * channels + d) : T(0);
}

// x holds the unnormalized inverse transform (H·W times the image): the 1/(H·W) is applied here
// instead of in a separate pass. C <= kRegisterChannels: a pixel's channels stay in registers.
template <typename T, int V>
__global__ void image_forward_kernel(const T* __restrict x, T* __restrict out, const T* __restrict k, Geometry g,
                                     const double* __restrict image_totals, double eps, T input_scale, T lo, T span,
                                     double* __restrict image_stats) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const Standardization s = chunks::image_standardization(stored_energy(image_totals + b * 2), g, eps);
  if (blockIdx.x == 0 && threadIdx.x == 0) chunks::store_standardization(s, false, image_stats + b * 2);
  T kk[kRegisterChannels][kRegisterChannels];
  load_color_matrix(k, int(g.channels), kk);
  for (int64_t p = first_chunk<V>(); p < plane; p += chunk_stride<V>())
    chunks::image_forward_chunk<V, kRegisterChannels>(x, out, kk, int(g.channels), plane, b, p, input_scale,
                                                      T(s.mean_re), T(s.inv_t), lo, span);
}

// Any C, through memory.
template <typename T>
__global__ void image_forward_any_channels_kernel(const T* __restrict x, T* __restrict out, const T* __restrict k,
                                                  Geometry g, const double* __restrict image_totals, double eps,
                                                  T input_scale, T lo, T span, double* __restrict image_stats) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const Standardization s = chunks::image_standardization(stored_energy(image_totals + b * 2), g, eps);
  if (blockIdx.x == 0 && threadIdx.x == 0) chunks::store_standardization(s, false, image_stats + b * 2);
  for (int64_t p = first_chunk<1>(); p < plane; p += chunk_stride<1>())
    chunks::image_forward_pixel_any_channels(x, out, k, int(g.channels), plane, b, p, input_scale, T(s.mean_re),
                                             T(s.inv_t), lo, span);
}

template <typename T, int V>
__global__ void image_backward_kernel(const T* __restrict grad_out, const T* __restrict x, T* __restrict grad_x,
                                      const T* __restrict k, Geometry g, const double* __restrict image_stats,
                                      double eps, T span, double* __restrict partials) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const Standardization s = chunks::stored_standardization(image_stats + b * 2, false, eps);
  T kk[kRegisterChannels][kRegisterChannels];
  load_color_matrix(k, int(g.channels), kk);
  chunks::Sums acc;
  for (int64_t p = first_chunk<V>(); p < plane; p += chunk_stride<V>())
    chunks::image_backward_chunk<V, kRegisterChannels>(grad_out, x, grad_x, kk, int(g.channels), plane, b, p,
                                                       T(1.0 / double(plane)), T(s.mean_re), T(s.inv_t), span, acc);
  block_sum_store(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

template <typename T>
__global__ void image_backward_any_channels_kernel(const T* __restrict grad_out, const T* __restrict x,
                                                   T* __restrict grad_x, const T* __restrict k, Geometry g,
                                                   const double* __restrict image_stats, double eps, T span,
                                                   double* __restrict partials) {
  const int64_t b = blockIdx.y, plane = g.height * g.width;
  const Standardization s = chunks::stored_standardization(image_stats + b * 2, false, eps);
  chunks::Sums acc;
  for (int64_t p = first_chunk<1>(); p < plane; p += chunk_stride<1>())
    chunks::image_backward_pixel_any_channels(grad_out, x, grad_x, k, int(g.channels), plane, b, p,
                                              T(1.0 / double(plane)), T(s.mean_re), T(s.inv_t), span, acc);
  block_sum_store(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

// ∂L/∂v̂ from G = rfft2(∂L/∂x̂), with the image standardization backward folded in.
template <typename T, typename Head, int V>
__global__ void spectrum_grad_kernel(Head head, Geometry g, const T* __restrict big_g,
                                     const double* __restrict head_stats, const double* __restrict image_stats,
                                     const double* __restrict image_grad_totals, double eps, T* __restrict grad,
                                     double* __restrict partials) {
  const int64_t b = blockIdx.y, n = g.spectrum_numel();
  const Standardization s = chunks::stored_standardization(head_stats + b * (Head::kComplex ? 3 : 2), Head::kComplex, eps);
  const Standardization image = chunks::stored_standardization(image_stats + b * 2, false, eps);
  const chunks::TailGrads tail = chunks::tail_grads(g, image, stored_sums(image_grad_totals + b * 3));
  chunks::Sums acc;
  for (int64_t i = first_chunk<V>(); i < n; i += chunk_stride<V>())
    chunks::spectrum_grad_chunk<V>(head, g, s, tail, b, i, chunks::SpectrumCursor(i, g), big_g, grad, acc);
  block_sum_store(acc, partials + (b * gridDim.x + blockIdx.x) * 3);
}

template <typename T, bool kComplex, int V>
__global__ void head_standardization_grad_kernel(const T* __restrict v, T* __restrict grad, int64_t n,
                                                 const double* __restrict head_stats,
                                                 const double* __restrict totals, double eps) {
  const int64_t b = blockIdx.y;
  const Standardization s = chunks::stored_standardization(head_stats + b * (kComplex ? 3 : 2), kComplex, eps);
  const auto sg = math::standardization_grad(totals[b * 3], totals[b * 3 + 1], totals[b * 3 + 2], n, s);
  for (int64_t i = first_chunk<V>(); i < n; i += chunk_stride<V>())
    chunks::head_standardization_grad_chunk<V, kComplex>(v, grad, n, b, i, s, sg);
}

// ---------------------------------------------------------------------------
// Host drivers
// ---------------------------------------------------------------------------

at::Tensor workspace(const at::Tensor& like, int64_t batch, int blocks, int columns) {
  return at::empty({batch, blocks, columns}, like.options().dtype(at::kDouble));
}

// Calls f with std::integral_constant<int, V>: the wide chunk width where `wide`, else 1.
template <typename F>
void with_chunk_width(bool wide, F&& f) {
  if (wide) {
    f(std::integral_constant<int, chunks::kWide>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

// PHASEVIS_CUDA_CHUNK=1: one-element chunks everywhere, to compare with the wide ones.
bool wide_chunks_allowed() {
  static const bool allowed = [] {
    const char* choice = std::getenv("PHASEVIS_CUDA_CHUNK");
    return choice == nullptr || std::string(choice) != "1";
  }();
  return allowed;
}

// Wide chunks need whole chunks per sample (every chunk then stays inside one sample and one
// channel plane) and 16-byte aligned pointers; tensors ATen allocates are, views may not be.
bool wide_chunks_fit(int64_t per_sample, std::initializer_list<const void*> pointers) {
  if (!wide_chunks_allowed() || per_sample % chunks::kWide != 0) return false;
  for (const void* p : pointers)
    if (!chunks::wide_aligned(p)) return false;
  return true;
}

// The kernels never synchronize with the host, so they raise no error for a non-finite input:
// phasevis_ext/synthesis.py reads the statistics they return instead (`fixed` and `names` unused).
template <typename T, typename Head>
SynthesisOutputs launch_forward(const Head& head, const at::Tensor& head_values, const at::Tensor& /*fixed*/,
                                const HeadNames& /*names*/, const Geometry& g, const at::Tensor& color_matrix,
                                double lo, double hi, double eps) {
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = g.spectrum_numel(), plane = g.height * g.width;

  at::Tensor spectrum = at::empty({g.batch, g.channels, g.height, g.half_width},
                                  head_values.options().dtype(c10::toComplexType(head_values.scalar_type())));
  at::Tensor head_stats = at::empty({g.batch, Head::kComplex ? 3 : 2}, head_values.options().dtype(at::kDouble));
  at::Tensor image_totals;
  with_chunk_width(head.wide_loads_aligned() && wide_chunks_fit(n, {spectrum.data_ptr()}),
                   [&](auto width) {
    constexpr int V = decltype(width)::value;
    const int nb = blocks_per_sample(n / V, g.batch);
    const dim3 grid(nb, g.batch);
    at::Tensor partials = workspace(head_values, g.batch, nb, 3);
    moments_kernel<T, Head::kComplex, V><<<grid, kThreads, 0, stream>>>(head_values.data_ptr<T>(), n,
                                                                         partials.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor head_totals = sum_partials<3>(partials, g.batch, nb);
    at::Tensor energy = workspace(head_values, g.batch, nb, 2);
    spectrum_kernel<T, Head, V><<<grid, kThreads, 0, stream>>>(
        head, g, head_totals.data_ptr<double>(), eps, reinterpret_cast<T*>(spectrum.data_ptr()),
        head_stats.data_ptr<double>(), energy.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    image_totals = sum_partials<2>(energy, g.batch, nb);
  });

  // Unnormalized: torch.fft.irfft2's 1/(H·W) would be one more pass over the image;
  // image_forward_kernel applies it while reading.
  at::Tensor x = cuda_fft::irfft2_consuming(spectrum, g.width);
  at::Tensor out = at::empty_like(x);
  at::Tensor image_stats = at::empty({g.batch, 2}, head_stats.options());
  const T input_scale = T(1.0 / double(plane));
  if (g.channels <= kRegisterChannels) {
    with_chunk_width(wide_chunks_fit(plane, {x.data_ptr(), out.data_ptr()}), [&](auto width) {
      constexpr int V = decltype(width)::value;
      image_forward_kernel<T, V><<<dim3(blocks_per_sample(plane / V, g.batch), g.batch), kThreads, 0, stream>>>(
          x.data_ptr<T>(), out.data_ptr<T>(), color_matrix.data_ptr<T>(), g, image_totals.data_ptr<double>(), eps,
          input_scale, T(lo), T(hi - lo), image_stats.data_ptr<double>());
    });
  } else {
    image_forward_any_channels_kernel<T><<<dim3(blocks_per_sample(plane, g.batch), g.batch), kThreads, 0, stream>>>(
        x.data_ptr<T>(), out.data_ptr<T>(), color_matrix.data_ptr<T>(), g, image_totals.data_ptr<double>(), eps,
        input_scale, T(lo), T(hi - lo), image_stats.data_ptr<double>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, x, head_stats, image_stats};
}

template <typename T, typename Head>
at::Tensor launch_backward(const Head& head, const at::Tensor& head_values, const Geometry& g,
                           const at::Tensor& grad_out, const at::Tensor& x_in, const at::Tensor& head_stats,
                           const at::Tensor& image_stats, const at::Tensor& color_matrix, double lo, double hi,
                           double eps) {
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = g.spectrum_numel(), plane = g.height * g.width;

  const at::Tensor go = grad_out.contiguous(), x = x_in.contiguous();
  const at::Tensor hs = head_stats.contiguous(), is = image_stats.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor image_grad_totals;
  if (g.channels <= kRegisterChannels) {
    with_chunk_width(wide_chunks_fit(plane, {go.data_ptr(), x.data_ptr(), grad_x.data_ptr()}), [&](auto width) {
      constexpr int V = decltype(width)::value;
      const int ib = blocks_per_sample(plane / V, g.batch);
      at::Tensor partials = workspace(head_values, g.batch, ib, 3);
      image_backward_kernel<T, V><<<dim3(ib, g.batch), kThreads, 0, stream>>>(
          go.data_ptr<T>(), x.data_ptr<T>(), grad_x.data_ptr<T>(), color_matrix.data_ptr<T>(), g,
          is.data_ptr<double>(), eps, T(hi - lo), partials.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      image_grad_totals = sum_partials<3>(partials, g.batch, ib);
    });
  } else {
    const int ib = blocks_per_sample(plane, g.batch);
    at::Tensor partials = workspace(head_values, g.batch, ib, 3);
    image_backward_any_channels_kernel<T><<<dim3(ib, g.batch), kThreads, 0, stream>>>(
        go.data_ptr<T>(), x.data_ptr<T>(), grad_x.data_ptr<T>(), color_matrix.data_ptr<T>(), g,
        is.data_ptr<double>(), eps, T(hi - lo), partials.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    image_grad_totals = sum_partials<3>(partials, g.batch, ib);
  }
  // Unnormalized, as torch.fft.rfft2's default "backward" norm is.
  const at::Tensor big_g = cuda_fft::rfft2_consuming(grad_x);

  at::Tensor grad = at::empty_like(head_values);
  with_chunk_width(head.wide_loads_aligned() && wide_chunks_fit(n, {big_g.const_data_ptr(), grad.data_ptr()}),
                   [&](auto width) {
    constexpr int V = decltype(width)::value;
    const int nb = blocks_per_sample(n / V, g.batch);
    const dim3 grid(nb, g.batch);
    at::Tensor partials = workspace(head_values, g.batch, nb, 3);
    spectrum_grad_kernel<T, Head, V><<<grid, kThreads, 0, stream>>>(
        head, g, reinterpret_cast<const T*>(big_g.const_data_ptr()), hs.data_ptr<double>(), is.data_ptr<double>(),
        image_grad_totals.data_ptr<double>(), eps, grad.data_ptr<T>(), partials.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor totals = sum_partials<3>(partials, g.batch, nb);
    head_standardization_grad_kernel<T, Head::kComplex, V><<<grid, kThreads, 0, stream>>>(
        head_values.data_ptr<T>(), grad.data_ptr<T>(), n, hs.data_ptr<double>(), totals.data_ptr<double>(), eps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

struct CudaDrivers {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;
  using Guard = c10::cuda::CUDAGuard;

  template <typename T, typename Head, typename... Args>
  static SynthesisOutputs forward(const Head& head, const Args&... args) {
    return launch_forward<T>(head, args...);
  }

  template <typename T, typename Head, typename... Args>
  static at::Tensor backward(const Head& head, const Args&... args) {
    return launch_backward<T>(head, args...);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, CUDA, m) { register_synthesis_kernels<CudaDrivers>(m); }

}  // namespace phasevis
