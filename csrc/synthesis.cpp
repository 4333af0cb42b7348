// Fused phase-to-image synthesis: CPU kernels (the op schemas are in csrc/ops.cpp).
//
// Memory passes per call (B·C·H·Wr "spectrum" elements, B·C·H·W "image" elements):
//   forward:  spectrum: 1 read (moments) + 1 read/1 write (X, with the image moments by Parseval)
//             unnormalized irfft2, then image: 1 read + 1 write (out; x̂ is formed on the fly)
//   backward: image: 2 reads + 1 write (∂L/∂x̂ and its sums), rfft2, then spectrum: 2 reads + 1 write
//             (∂L/∂v̂ with the image standardization folded in) + 1 read/1 write (head standardization)
// Backward keeps x, the unnormalized inverse transform (one image-sized tensor), rather than x̂:
// x̂ = (x/(H·W) - mean)·inv_t is two flops away, and not storing it saves an image-sized write.
// It also keeps the per-sample statistics and the inputs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "synthesis_checks.h"
#include "synthesis_math.h"

namespace phasevis {
namespace {

using math::Standardization;
using math::TailGrad;
using SynthesisOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Rows of at least this many elements per task keep at::parallel_for's overhead negligible.
int64_t grain_for(int64_t row_length) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_length)); }

// Sums `per_row` partials (`columns` each) into per-sample totals in a fixed order, so results
// do not depend on the thread count.
std::vector<double> sum_rows_per_sample(const std::vector<double>& per_row, int64_t batch, int64_t rows_per_sample,
                                        int columns) {
  std::vector<double> totals(batch * columns, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows_per_sample; ++r)
      for (int j = 0; j < columns; ++j) totals[b * columns + j] += per_row[(b * rows_per_sample + r) * columns + j];
  return totals;
}

// ---------------------------------------------------------------------------
// Row kernels (vectorized; compiled per ISA)
// ---------------------------------------------------------------------------

template <typename T>
PV_CPU_CLONES void real_moments_row(const T* __restrict v, int64_t n, double* out) {
  double sum = 0.0, sq = 0.0;
#pragma omp simd reduction(+ : sum, sq)
  for (int64_t i = 0; i < n; ++i) {
    sum += double(v[i]);
    sq += double(v[i]) * double(v[i]);
  }
  out[0] = sum;
  out[1] = 0.0;
  out[2] = sq;
}

template <typename T>
PV_CPU_CLONES void complex_moments_row(const T* __restrict z, int64_t n, double* out) {
  double re = 0.0, im = 0.0, sq = 0.0;
#pragma omp simd reduction(+ : re, im, sq)
  for (int64_t i = 0; i < n; ++i) {
    const double a = z[2 * i], b = z[2 * i + 1];
    re += a;
    im += b;
    sq += a * a + b * b;
  }
  out[0] = re;
  out[1] = im;
  out[2] = sq;
}

// |X|² of the self-conjugate columns of a row, which Parseval counts apart. Kept out of the
// vector loops: a branch there stops GCC from vectorizing them.
template <typename T>
double self_conjugate_energy(const T* x, int64_t n, int64_t interior_end) {
  double e = double(x[0]) * x[0] + double(x[1]) * x[1];
  for (int64_t k = interior_end; k < n; ++k) e += double(x[2 * k]) * x[2 * k] + double(x[2 * k + 1]) * x[2 * k + 1];
  return e;
}

// X = M·e^{iφ̂} for one row; returns Σ|X|² over the interior columns (Parseval).
template <typename T>
PV_CPU_CLONES double maco_spectrum_row(const T* __restrict phase, const T* __restrict magnitude, T* __restrict x,
                                       int64_t n, int64_t interior_end, T mean, T inv_t) {
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t k = 0; k < n; ++k) {
    T s, c, re, im;
    math::fast_sincos((phase[k] - mean) * inv_t, &s, &c);
    math::maco_spectrum(magnitude[k], s, c, &re, &im);
    x[2 * k] = re;
    x[2 * k + 1] = im;
    sq += double(re) * re + double(im) * im;
  }
  return sq - self_conjugate_energy(x, n, interior_end);
}

template <typename T>
PV_CPU_CLONES double fourier_spectrum_row(const T* __restrict z, const T* __restrict scale, T* __restrict x,
                                          int64_t n, int64_t interior_end, T mean_re, T mean_im, T inv_t) {
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t k = 0; k < n; ++k) {
    const T f = scale[k] * inv_t;
    const T re = (z[2 * k] - mean_re) * f, im = (z[2 * k + 1] - mean_im) * f;
    x[2 * k] = re;
    x[2 * k + 1] = im;
    sq += double(re) * re + double(im) * im;
  }
  return sq - self_conjugate_energy(x, n, interior_end);
}

// out = lo + span·sigmoid(x̂·K) for one image row of all channels, x̂ = (x·input_scale - mean)·inv_t
// from the unnormalized inverse transform x. kC = 0: any C.
template <typename T, int kC>
PV_CPU_CLONES void image_forward_row(const T* __restrict x, T* __restrict out, const T* __restrict k,
                                     int64_t channels, int64_t plane, int64_t n, T input_scale, T mean, T inv_t, T lo,
                                     T span) {
  if constexpr (kC > 0) {
#pragma omp simd
    for (int64_t w = 0; w < n; ++w) {
      T xh[kC];
      for (int c = 0; c < kC; ++c) xh[c] = (x[c * plane + w] * input_scale - mean) * inv_t;
      for (int d = 0; d < kC; ++d) {
        T y = 0;
        for (int c = 0; c < kC; ++c) y += xh[c] * k[c * kC + d];
        out[d * plane + w] = lo + span * math::sigmoid(y);
      }
    }
  } else {
    std::vector<T> xh(channels);
    for (int64_t w = 0; w < n; ++w) {
      for (int64_t c = 0; c < channels; ++c) xh[c] = (x[c * plane + w] * input_scale - mean) * inv_t;
      for (int64_t d = 0; d < channels; ++d) {
        T y = 0;
        for (int64_t c = 0; c < channels; ++c) y += xh[c] * k[c * channels + d];
        out[d * plane + w] = lo + span * math::sigmoid(y);
      }
    }
  }
}

// ∂L/∂x̂ = K·(∂L/∂out ⊙ span·σ'(y)) for one image row, x̂ formed from x as in image_forward_row;
// accumulates Σ∂L/∂x̂ and Σ∂L/∂x̂·x̂.
template <typename T, int kC>
PV_CPU_CLONES void image_backward_row(const T* __restrict grad_out, const T* __restrict x, T* __restrict grad_x,
                                      const T* __restrict k, int64_t channels, int64_t plane, int64_t n,
                                      T input_scale, T mean, T inv_t, T span, double* sums) {
  double sum = 0.0, dot = 0.0;
  if constexpr (kC > 0) {
#pragma omp simd reduction(+ : sum, dot)
    for (int64_t w = 0; w < n; ++w) {
      T xh[kC], gy[kC];
      for (int c = 0; c < kC; ++c) xh[c] = (x[c * plane + w] * input_scale - mean) * inv_t;
      for (int d = 0; d < kC; ++d) {
        T y = 0;
        for (int c = 0; c < kC; ++c) y += xh[c] * k[c * kC + d];
        const T s = math::sigmoid(y);
        gy[d] = grad_out[d * plane + w] * span * s * (T(1) - s);
      }
      for (int c = 0; c < kC; ++c) {
        T g = 0;
        for (int d = 0; d < kC; ++d) g += k[c * kC + d] * gy[d];
        grad_x[c * plane + w] = g;
        sum += g;
        dot += double(g) * xh[c];
      }
    }
  } else {
    std::vector<T> gy(channels), xh(channels);
    for (int64_t w = 0; w < n; ++w) {
      for (int64_t c = 0; c < channels; ++c) xh[c] = (x[c * plane + w] * input_scale - mean) * inv_t;
      for (int64_t d = 0; d < channels; ++d) {
        T y = 0;
        for (int64_t c = 0; c < channels; ++c) y += xh[c] * k[c * channels + d];
        const T s = math::sigmoid(y);
        gy[d] = grad_out[d * plane + w] * span * s * (T(1) - s);
      }
      for (int64_t c = 0; c < channels; ++c) {
        T g = 0;
        for (int64_t d = 0; d < channels; ++d) g += k[c * channels + d] * gy[d];
        grad_x[c * plane + w] = g;
        sum += g;
        dot += double(g) * xh[c];
      }
    }
  }
  sums[0] = sum;
  sums[1] = dot;
}

// Interior columns [k0, k1) of one spectrum row: ∂L/∂φ̂ into grad, Σg and Σg·φ̂ into sums.
template <typename T>
PV_CPU_CLONES void maco_spectrum_grad_row(const T* __restrict phase, const T* __restrict magnitude,
                                          const T* __restrict big_g, T* __restrict grad, int64_t k0, int64_t k1,
                                          T mean, T inv_t, TailGrad tail, double* sums) {
  double sum = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : sum, dot)
  for (int64_t k = k0; k < k1; ++k) {
    const T ph = (phase[k] - mean) * inv_t;
    T s, c, re, im, g_re, g_im;
    math::fast_sincos(ph, &s, &c);
    math::maco_spectrum(magnitude[k], s, c, &re, &im);
    math::tail_spectrum_grad(tail, false, big_g[2 * k], big_g[2 * k + 1], re, im, &g_re, &g_im);
    const T g = math::maco_phase_grad(magnitude[k], s, c, g_re, g_im);
    grad[k] = g;
    sum += g;
    dot += double(g) * ph;
  }
  sums[0] += sum;
  sums[2] += dot;
}

template <typename T>
PV_CPU_CLONES void fourier_spectrum_grad_row(const T* __restrict z, const T* __restrict scale,
                                             const T* __restrict big_g, T* __restrict grad, int64_t k0, int64_t k1,
                                             T mean_re, T mean_im, T inv_t, TailGrad tail, double* sums) {
  double sum_re = 0.0, sum_im = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : sum_re, sum_im, dot)
  for (int64_t k = k0; k < k1; ++k) {
    const T zr = (z[2 * k] - mean_re) * inv_t, zi = (z[2 * k + 1] - mean_im) * inv_t;
    T g_re, g_im;
    math::tail_spectrum_grad(tail, false, big_g[2 * k], big_g[2 * k + 1], zr * scale[k], zi * scale[k], &g_re, &g_im);
    g_re *= scale[k];
    g_im *= scale[k];
    grad[2 * k] = g_re;
    grad[2 * k + 1] = g_im;
    sum_re += g_re;
    sum_im += g_im;
    dot += double(g_re) * zr + double(g_im) * zi;
  }
  sums[0] += sum_re;
  sums[1] += sum_im;
  sums[2] += dot;
}

// g_v = scale·g + shift + along·v̂, in place over a sample (v̂ recomputed from v).
template <typename T>
PV_CPU_CLONES void real_standardization_grad_span(const T* __restrict v, T* __restrict grad, int64_t n, T mean,
                                                  T inv_t, T scale, T shift, T along) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) grad[i] = scale * grad[i] + shift + along * ((v[i] - mean) * inv_t);
}

template <typename T>
PV_CPU_CLONES void complex_standardization_grad_span(const T* __restrict z, T* __restrict grad, int64_t n,
                                                     T mean_re, T mean_im, T inv_t, T scale, T shift_re, T shift_im,
                                                     T along) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    grad[2 * i] = scale * grad[2 * i] + shift_re + along * ((z[2 * i] - mean_re) * inv_t);
    grad[2 * i + 1] = scale * grad[2 * i + 1] + shift_im + along * ((z[2 * i + 1] - mean_im) * inv_t);
  }
}

// ---------------------------------------------------------------------------
// Per-sample statistics and the shared tail
// ---------------------------------------------------------------------------

// Σ, Σ_im and Σ|v|² of each sample of a (B, n) real or (B, n, 2) complex contiguous tensor.
template <typename T>
std::vector<Standardization> head_standardization(const T* v, const Geometry& g, bool complex_pairs, double eps) {
  const int64_t rows = g.batch * g.channels * g.height, n = g.half_width, stride = complex_pairs ? 2 * n : n;
  std::vector<double> per_row(rows * 3);
  at::parallel_for(0, rows, grain_for(stride), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (complex_pairs)
        complex_moments_row(v + r * stride, n, &per_row[r * 3]);
      else
        real_moments_row(v + r * stride, n, &per_row[r * 3]);
    }
  });
  const auto totals = sum_rows_per_sample(per_row, g.batch, g.channels * g.height, 3);
  std::vector<Standardization> out(g.batch);
  for (int64_t b = 0; b < g.batch; ++b)
    out[b] = math::standardization_from_sums(totals[b * 3], totals[b * 3 + 1], totals[b * 3 + 2], g.spectrum_numel(), eps);
  return out;
}

at::Tensor stats_tensor(const std::vector<Standardization>& s, bool complex_mean) {
  const int64_t cols = complex_mean ? 3 : 2;
  at::Tensor t = at::empty({int64_t(s.size()), cols}, at::TensorOptions().dtype(at::kDouble));
  double* p = t.data_ptr<double>();
  for (size_t b = 0; b < s.size(); ++b) {
    p[b * cols] = s[b].mean_re;
    if (complex_mean) p[b * cols + 1] = s[b].mean_im;
    p[b * cols + cols - 1] = s[b].std;
  }
  return t;
}

std::vector<Standardization> stats_from_tensor(const at::Tensor& t, double eps) {
  const at::Tensor c = t.contiguous();
  const double* p = c.data_ptr<double>();
  const int64_t cols = c.size(1);
  std::vector<Standardization> out(c.size(0));
  for (int64_t b = 0; b < c.size(0); ++b) {
    out[b].mean_re = p[b * cols];
    out[b].mean_im = cols == 3 ? p[b * cols + 1] : 0.0;
    out[b].std = p[b * cols + cols - 1];
    out[b].inv_t = 1.0 / (out[b].std + eps);
  }
  return out;
}

// Image statistics from the spectrum (Parseval), so no pass over the image is needed before
// the standardization: Σx = Σ_c Re X_c[0, 0] and Σx² = Σ_k w_k |F_k|² / (H·W).
template <typename T>
std::vector<Standardization> image_standardization(const T* x, const Geometry& g,
                                                   const std::vector<double>& interior_sq_per_row, double eps) {
  const int64_t rows_per_sample = g.channels * g.height, wr = g.half_width;
  const auto interior = sum_rows_per_sample(interior_sq_per_row, g.batch, rows_per_sample, 1);
  std::vector<Standardization> out(g.batch);
  for (int64_t b = 0; b < g.batch; ++b) {
    double sum = 0.0, sq = 2.0 * interior[b];
    for (int64_t c = 0; c < g.channels; ++c) {
      const T* plane = x + ((b * g.channels + c) * g.height) * wr * 2;
      sum += plane[0];
      for (int i = 0; i < math::self_conjugate_column_count(g.width); ++i) {
        const int64_t k = math::self_conjugate_column(i, g.width);
        for (int64_t h = 0; h < g.height; ++h) {
          const int64_t p = math::conjugate_row(h, g.height);
          T re, im;
          math::hermitian_part(plane[(h * wr + k) * 2], plane[(h * wr + k) * 2 + 1], plane[(p * wr + k) * 2],
                               plane[(p * wr + k) * 2 + 1], &re, &im);
          sq += double(re) * re + double(im) * im;
        }
      }
    }
    out[b] = math::standardization_from_sums(sum, 0.0, sq / double(g.height * g.width), g.image_numel(), eps);
  }
  return out;
}

template <typename T, typename RowFn>
void for_each_image_row(const Geometry& g, RowFn fn) {
  at::parallel_for(0, g.batch * g.height, grain_for(g.width * g.channels), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r / g.height, r % g.height, r);
  });
}

// Unnormalized irfft2 (kept for backward), then the image. Returns {out, x, image_stats}.
template <typename T>
std::vector<at::Tensor> tail_forward(const at::Tensor& spectrum, const Geometry& g,
                                     const std::vector<double>& interior_sq_per_row, const at::Tensor& color_matrix,
                                     double lo, double hi, double eps) {
  const auto stats = image_standardization(reinterpret_cast<const T*>(spectrum.const_data_ptr()), g,
                                           interior_sq_per_row, eps);
  // norm "forward" leaves the inverse unscaled; image_forward_row applies the 1/(H·W).
  at::Tensor x = at::fft_irfft2(spectrum, at::IntArrayRef{g.height, g.width}, {-2, -1}, "forward").contiguous();
  at::Tensor out = at::empty_like(x);
  const T* xp = x.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  const T* k = color_matrix.const_data_ptr<T>();
  const int64_t plane = g.height * g.width;
  const T input_scale = T(1.0 / double(plane));
  for_each_image_row<T>(g, [&](int64_t b, int64_t h, int64_t) {
    const int64_t o = b * g.channels * plane + h * g.width;
    const T mean = T(stats[b].mean_re), inv_t = T(stats[b].inv_t), tlo = T(lo), span = T(hi - lo);
    if (g.channels == 3)
      image_forward_row<T, 3>(xp + o, op + o, k, 3, plane, g.width, input_scale, mean, inv_t, tlo, span);
    else if (g.channels == 1)
      image_forward_row<T, 1>(xp + o, op + o, k, 1, plane, g.width, input_scale, mean, inv_t, tlo, span);
    else
      image_forward_row<T, 0>(xp + o, op + o, k, g.channels, plane, g.width, input_scale, mean, inv_t, tlo, span);
  });
  return {out, x, stats_tensor(stats, false)};
}

// Backward of the tail up to the spectrum: G = rfft2(∂L/∂x̂) and, per sample, the coefficients
// that turn G into ∂L/∂X (see math::tail_spectrum_grad).
template <typename T>
std::pair<at::Tensor, std::vector<TailGrad>> tail_backward(const at::Tensor& grad_out, const at::Tensor& x_in,
                                                           const at::Tensor& image_stats,
                                                           const at::Tensor& color_matrix, const Geometry& g,
                                                           double lo, double hi, double eps) {
  at::Tensor go = grad_out.contiguous();
  at::Tensor x = x_in.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  const T* gop = go.const_data_ptr<T>();
  const T* xp = x.const_data_ptr<T>();
  T* gxp = grad_x.data_ptr<T>();
  const T* k = color_matrix.const_data_ptr<T>();
  const int64_t plane = g.height * g.width;
  const T span = T(hi - lo), input_scale = T(1.0 / double(plane));
  const auto stats = stats_from_tensor(image_stats, eps);
  std::vector<double> per_row(g.batch * g.height * 2);
  for_each_image_row<T>(g, [&](int64_t b, int64_t h, int64_t r) {
    const int64_t o = b * g.channels * plane + h * g.width;
    const T mean = T(stats[b].mean_re), inv_t = T(stats[b].inv_t);
    double* sums = &per_row[r * 2];
    if (g.channels == 3)
      image_backward_row<T, 3>(gop + o, xp + o, gxp + o, k, 3, plane, g.width, input_scale, mean, inv_t, span, sums);
    else if (g.channels == 1)
      image_backward_row<T, 1>(gop + o, xp + o, gxp + o, k, 1, plane, g.width, input_scale, mean, inv_t, span, sums);
    else
      image_backward_row<T, 0>(gop + o, xp + o, gxp + o, k, g.channels, plane, g.width, input_scale, mean, inv_t,
                               span, sums);
  });
  const auto sums = sum_rows_per_sample(per_row, g.batch, g.height, 2);
  std::vector<TailGrad> tails(g.batch);
  for (int64_t b = 0; b < g.batch; ++b) {
    const auto sg = math::standardization_grad(sums[b * 2], 0.0, sums[b * 2 + 1], g.image_numel(), stats[b]);
    tails[b] = TailGrad{2.0 / double(plane), sg.scale, sg.along * stats[b].inv_t, sg.shift_re,
                        stats[b].mean_re * double(plane)};
  }
  return {at::fft_rfft2(grad_x, std::nullopt, {-2, -1}, "backward"), tails};
}

// The self-conjugate columns of a spectrum-gradient row, where F is the Hermitian part and the
// DC bin carries the mean terms. `value(h, k, re, im)` recomputes the head's X; `accumulate`
// applies the head's chain rule to ∂L/∂X.
template <typename T, typename ValueFn, typename AccumulateFn>
void self_conjugate_columns_grad(const Geometry& g, int64_t h, const T* big_g_row, TailGrad tail, ValueFn value,
                                 AccumulateFn accumulate) {
  tail.weight_over_hw *= 0.5;
  for (int i = 0; i < math::self_conjugate_column_count(g.width); ++i) {
    const int64_t k = math::self_conjugate_column(i, g.width);
    T re, im, pre, pim, fre, fim, g_re, g_im;
    value(h, k, &re, &im);
    value(math::conjugate_row(h, g.height), k, &pre, &pim);
    math::hermitian_part(re, im, pre, pim, &fre, &fim);
    math::tail_spectrum_grad(tail, h == 0 && k == 0, big_g_row[2 * k], big_g_row[2 * k + 1], fre, fim, &g_re, &g_im);
    accumulate(k, re, im, g_re, g_im);
  }
}

template <typename RowFn>
void for_each_spectrum_row(const Geometry& g, int64_t row_length, RowFn fn) {
  at::parallel_for(0, g.batch * g.channels * g.height, grain_for(row_length), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r / (g.channels * g.height), r % g.height, r);
  });
}

// ---------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------

template <typename T>
SynthesisOutputs maco_forward_impl(const at::Tensor& phase_in, const at::Tensor& magnitude_in, int64_t height,
                                          int64_t width, double lo, double hi, const at::Tensor& color_matrix,
                                          double eps) {
  const Geometry g = head_geometry(phase_in, height, width, false);
  const at::Tensor phase = phase_in.contiguous();
  const auto shared_or_not = per_sample_or_shared(magnitude_in, g, "magnitude");
  const at::Tensor& magnitude = shared_or_not.first;
  const int64_t magnitude_stride = shared_or_not.second;
  const auto stats = head_standardization(phase.const_data_ptr<T>(), g, false, eps);
  at::Tensor spectrum = at::empty({g.batch, g.channels, g.height, g.half_width}, phase.options().dtype(
                                      c10::toComplexType(phase.scalar_type())));
  const T* pp = phase.const_data_ptr<T>();
  const T* mp = magnitude.const_data_ptr<T>();
  T* xp = reinterpret_cast<T*>(spectrum.data_ptr());
  const int64_t wr = g.half_width, rows_per_sample = g.channels * g.height;
  std::vector<double> interior_sq(g.batch * rows_per_sample);
  for_each_spectrum_row(g, wr, [&](int64_t b, int64_t, int64_t r) {
    const int64_t in_sample = r - b * rows_per_sample;
    interior_sq[r] = maco_spectrum_row(pp + r * wr, mp + b * magnitude_stride + in_sample * wr, xp + r * wr * 2, wr,
                                       math::interior_end(g.width), T(stats[b].mean_re), T(stats[b].inv_t));
  });
  auto tail = tail_forward<T>(spectrum, g, interior_sq, color_matrix.contiguous(), lo, hi, eps);
  return {tail[0], tail[1], stats_tensor(stats, false), tail[2]};
}

template <typename T>
at::Tensor maco_backward_impl(const at::Tensor& grad_out, const at::Tensor& phase_in, const at::Tensor& magnitude_in,
                              const at::Tensor& x, const at::Tensor& phase_stats, const at::Tensor& image_stats,
                              const at::Tensor& color_matrix, double lo, double hi, double eps, int64_t width) {
  const Geometry g = head_geometry(phase_in, phase_in.size(2), width, false);
  const at::Tensor phase = phase_in.contiguous();
  const auto shared_or_not = per_sample_or_shared(magnitude_in, g, "magnitude");
  const at::Tensor& magnitude = shared_or_not.first;
  const int64_t magnitude_stride = shared_or_not.second;
  const auto tail = tail_backward<T>(grad_out, x, image_stats, color_matrix.contiguous(), g, lo, hi, eps);
  const at::Tensor& big_g = tail.first;
  const std::vector<TailGrad>& tails = tail.second;
  const auto stats = stats_from_tensor(phase_stats, eps);
  at::Tensor grad = at::empty_like(phase);
  const T* pp = phase.const_data_ptr<T>();
  const T* mp = magnitude.const_data_ptr<T>();
  const T* gp = reinterpret_cast<const T*>(big_g.const_data_ptr());
  T* out = grad.data_ptr<T>();
  const int64_t wr = g.half_width, rows_per_sample = g.channels * g.height, end = math::interior_end(g.width);
  std::vector<double> per_row(g.batch * rows_per_sample * 3, 0.0);
  for_each_spectrum_row(g, wr, [&](int64_t b, int64_t h, int64_t r) {
    const T mean = T(stats[b].mean_re), inv_t = T(stats[b].inv_t);
    const T* phase_plane = pp + (r - h) * wr;  // this channel's (H, Wr) plane
    const T* magnitude_plane = mp + b * magnitude_stride + (r - h - b * rows_per_sample) * wr;
    double* sums = &per_row[r * 3];
    maco_spectrum_grad_row(pp + r * wr, magnitude_plane + h * wr, gp + r * wr * 2, out + r * wr, int64_t(1), end,
                           mean, inv_t, tails[b], sums);
    auto value = [&](int64_t row, int64_t k, T* re, T* im) {
      T s, c;
      math::fast_sincos((phase_plane[row * wr + k] - mean) * inv_t, &s, &c);
      math::maco_spectrum(magnitude_plane[row * wr + k], s, c, re, im);
    };
    auto accumulate = [&](int64_t k, T, T, T g_re, T g_im) {
      const T ph = (phase_plane[h * wr + k] - mean) * inv_t;
      T s, c;
      math::fast_sincos(ph, &s, &c);
      const T gk = math::maco_phase_grad(magnitude_plane[h * wr + k], s, c, g_re, g_im);
      out[r * wr + k] = gk;
      sums[0] += gk;
      sums[2] += double(gk) * ph;
    };
    self_conjugate_columns_grad<T>(g, h, gp + r * wr * 2, tails[b], value, accumulate);
  });
  const auto sums = sum_rows_per_sample(per_row, g.batch, rows_per_sample, 3);
  const int64_t n = g.spectrum_numel();
  at::parallel_for(0, g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const auto sg = math::standardization_grad(sums[b * 3], 0.0, sums[b * 3 + 2], n, stats[b]);
      real_standardization_grad_span(pp + b * n, out + b * n, n, T(stats[b].mean_re), T(stats[b].inv_t),
                                     T(sg.scale), T(sg.shift_re), T(sg.along));
    }
  });
  return grad;
}

template <typename T>
SynthesisOutputs fourier_forward_impl(const at::Tensor& spectrum_in, const at::Tensor& scale_in,
                                             int64_t height, int64_t width, double lo, double hi,
                                             const at::Tensor& color_matrix, double eps) {
  const Geometry g = head_geometry(spectrum_in, height, width, true);
  const at::Tensor z = spectrum_in.contiguous();
  const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
  const auto stats = head_standardization(z.const_data_ptr<T>(), g, true, eps);
  at::Tensor spectrum = at::empty({g.batch, g.channels, g.height, g.half_width},
                                  z.options().dtype(c10::toComplexType(z.scalar_type())));
  const T* zp = z.const_data_ptr<T>();
  const T* sp = scale.const_data_ptr<T>();
  T* xp = reinterpret_cast<T*>(spectrum.data_ptr());
  const int64_t wr = g.half_width, rows_per_sample = g.channels * g.height;
  std::vector<double> interior_sq(g.batch * rows_per_sample);
  for_each_spectrum_row(g, 2 * wr, [&](int64_t b, int64_t h, int64_t r) {
    interior_sq[r] = fourier_spectrum_row(zp + r * wr * 2, sp + h * wr, xp + r * wr * 2, wr,
                                          math::interior_end(g.width), T(stats[b].mean_re), T(stats[b].mean_im),
                                          T(stats[b].inv_t));
  });
  auto tail = tail_forward<T>(spectrum, g, interior_sq, color_matrix.contiguous(), lo, hi, eps);
  return {tail[0], tail[1], stats_tensor(stats, true), tail[2]};
}

template <typename T>
at::Tensor fourier_backward_impl(const at::Tensor& grad_out, const at::Tensor& spectrum_in,
                                 const at::Tensor& scale_in, const at::Tensor& x,
                                 const at::Tensor& spectrum_stats, const at::Tensor& image_stats,
                                 const at::Tensor& color_matrix, double lo, double hi, double eps, int64_t width) {
  const Geometry g = head_geometry(spectrum_in, spectrum_in.size(2), width, true);
  const at::Tensor z = spectrum_in.contiguous();
  const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
  const auto tail = tail_backward<T>(grad_out, x, image_stats, color_matrix.contiguous(), g, lo, hi, eps);
  const at::Tensor& big_g = tail.first;
  const std::vector<TailGrad>& tails = tail.second;
  const auto stats = stats_from_tensor(spectrum_stats, eps);
  at::Tensor grad = at::empty_like(z);
  const T* zp = z.const_data_ptr<T>();
  const T* sp = scale.const_data_ptr<T>();
  const T* gp = reinterpret_cast<const T*>(big_g.const_data_ptr());
  T* out = grad.data_ptr<T>();
  const int64_t wr = g.half_width, rows_per_sample = g.channels * g.height, end = math::interior_end(g.width);
  std::vector<double> per_row(g.batch * rows_per_sample * 3, 0.0);
  for_each_spectrum_row(g, 2 * wr, [&](int64_t b, int64_t h, int64_t r) {
    const T mr = T(stats[b].mean_re), mi = T(stats[b].mean_im), inv_t = T(stats[b].inv_t);
    const T* z_plane = zp + (r - h) * wr * 2;
    double* sums = &per_row[r * 3];
    fourier_spectrum_grad_row(zp + r * wr * 2, sp + h * wr, gp + r * wr * 2, out + r * wr * 2, int64_t(1), end, mr,
                              mi, inv_t, tails[b], sums);
    auto value = [&](int64_t row, int64_t k, T* re, T* im) {
      *re = (z_plane[(row * wr + k) * 2] - mr) * inv_t * sp[row * wr + k];
      *im = (z_plane[(row * wr + k) * 2 + 1] - mi) * inv_t * sp[row * wr + k];
    };
    auto accumulate = [&](int64_t k, T, T, T g_re, T g_im) {
      const T s = sp[h * wr + k];
      const T zr = (z_plane[(h * wr + k) * 2] - mr) * inv_t, zi = (z_plane[(h * wr + k) * 2 + 1] - mi) * inv_t;
      out[(r * wr + k) * 2] = g_re * s;
      out[(r * wr + k) * 2 + 1] = g_im * s;
      sums[0] += g_re * s;
      sums[1] += g_im * s;
      sums[2] += double(g_re * s) * zr + double(g_im * s) * zi;
    };
    self_conjugate_columns_grad<T>(g, h, gp + r * wr * 2, tails[b], value, accumulate);
  });
  const auto sums = sum_rows_per_sample(per_row, g.batch, rows_per_sample, 3);
  const int64_t n = g.spectrum_numel();
  at::parallel_for(0, g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const auto sg = math::standardization_grad(sums[b * 3], sums[b * 3 + 1], sums[b * 3 + 2], n, stats[b]);
      complex_standardization_grad_span(zp + b * n * 2, out + b * n * 2, n, T(stats[b].mean_re),
                                        T(stats[b].mean_im), T(stats[b].inv_t), T(sg.scale), T(sg.shift_re),
                                        T(sg.shift_im), T(sg.along));
    }
  });
  return grad;
}

// ---------------------------------------------------------------------------
// CPU entry points
// ---------------------------------------------------------------------------

SynthesisOutputs maco_synthesis_cpu(const at::Tensor& phase, const at::Tensor& magnitude, int64_t height,
                                           int64_t width, double lo, double hi, const at::Tensor& color_matrix,
                                           double eps) {
  check_forward_args(Head::kMaco, phase, magnitude, height, width, color_matrix, c10::DeviceType::CPU);
  return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis_cpu", [&] {
    return maco_forward_impl<scalar_t>(phase, magnitude, height, width, lo, hi, color_matrix, eps);
  });
}

at::Tensor maco_synthesis_backward_cpu(const at::Tensor& grad_out, const at::Tensor& phase,
                                       const at::Tensor& magnitude, const at::Tensor& x,
                                       const at::Tensor& phase_stats, const at::Tensor& image_stats,
                                       const at::Tensor& color_matrix, double lo, double hi, double eps) {
  const Geometry g = check_backward_args(Head::kMaco, grad_out, phase, magnitude, x, phase_stats,
                                         image_stats, color_matrix, c10::DeviceType::CPU);
  return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis_backward_cpu", [&] {
    return maco_backward_impl<scalar_t>(grad_out, phase, magnitude, x, phase_stats, image_stats, color_matrix,
                                        lo, hi, eps, g.width);
  });
}

SynthesisOutputs fourier_synthesis_cpu(const at::Tensor& spectrum, const at::Tensor& scale, int64_t height,
                                              int64_t width, double lo, double hi, const at::Tensor& color_matrix,
                                              double eps) {
  check_forward_args(Head::kFourier, spectrum, scale, height, width, color_matrix,
                     c10::DeviceType::CPU);
  return AT_DISPATCH_FLOATING_TYPES(spectrum.scalar_type(), "fourier_synthesis_cpu", [&] {
    return fourier_forward_impl<scalar_t>(spectrum, scale, height, width, lo, hi, color_matrix, eps);
  });
}

at::Tensor fourier_synthesis_backward_cpu(const at::Tensor& grad_out, const at::Tensor& spectrum,
                                          const at::Tensor& scale, const at::Tensor& x,
                                          const at::Tensor& spectrum_stats, const at::Tensor& image_stats,
                                          const at::Tensor& color_matrix, double lo, double hi, double eps) {
  const Geometry g = check_backward_args(Head::kFourier, grad_out, spectrum, scale, x,
                                         spectrum_stats, image_stats, color_matrix, c10::DeviceType::CPU);
  return AT_DISPATCH_FLOATING_TYPES(spectrum.scalar_type(), "fourier_synthesis_backward_cpu", [&] {
    return fourier_backward_impl<scalar_t>(grad_out, spectrum, scale, x, spectrum_stats, image_stats,
                                           color_matrix, lo, hi, eps, g.width);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, CPU, m) {
  m.impl("maco_synthesis", &maco_synthesis_cpu);
  m.impl("maco_synthesis_backward", &maco_synthesis_backward_cpu);
  m.impl("fourier_synthesis", &fourier_synthesis_cpu);
  m.impl("fourier_synthesis_backward", &fourier_synthesis_backward_cpu);
}

}  // namespace phasevis
