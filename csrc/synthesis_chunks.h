// The per-element work of the fused synthesis, shared by the CPU op (csrc/synthesis.cpp) and the
// CUDA kernels (csrc/cuda/synthesis.cu) as __host__ __device__ functions. Each one handles a chunk
// of V consecutive elements of one sample. The CUDA kernels wrap them in grid-stride loops and
// block reductions; the CPU runs one-element chunks in vectorized loops over a row, each row a
// task of at::parallel_for. The math therefore exists once, and the C++ and Python tests of the
// CPU op test the code the GPU runs.
//
// Why chunks: at 1024² the elementwise kernels were far from the H100's bandwidth, being
// instruction-bound (64-bit division for the bin's row and column) or latency-bound (one 4-byte
// load in flight per thread). A chunk of V = 4 does one 32-bit division and issues 16-byte loads.
#pragma once

#include <cmath>
#include <cstdint>

#include "synthesis_math.h"

namespace phasevis {
namespace chunks {

using math::Standardization;
using math::TailGrad;

// Chunk widths the kernels are built for: 4 where every pointer is 16-byte aligned for it and the
// chunk divides the sample, else 1.
constexpr int kWide = 4;

// V consecutive values moved as one aligned access, which nvcc turns into vector loads and stores.
template <typename T, int V>
struct alignas(sizeof(T) * V < 16 ? sizeof(T) * V : 16) Vec {
  T v[V];
};

// Whether p may start a wide chunk's vector access (Vec aligns to at most 16 bytes).
inline bool wide_aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The device moves a chunk as one access; the host element by element, which the vectorizer folds
// into its vector loads and stores (it does not see through a memcpy of the whole chunk).
template <int V, typename T>
PV_HD Vec<T, V> load(const T* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const Vec<T, V>*>(p);
#else
  Vec<T, V> r;
  for (int j = 0; j < V; ++j) r.v[j] = p[j];
  return r;
#endif
}

template <int V, typename T>
PV_HD void store(T* p, const Vec<T, V>& value) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<Vec<T, V>*>(p) = value;
#else
  for (int j = 0; j < V; ++j) p[j] = value.v[j];
#endif
}

// Where the bins of a chunk lie. The spectrum chunk functions take either cursor.
//
// SpectrumCursor: row h and column k of element i of a sample's (C, H, Wr) spectrum, then walked
// one element at a time; a chunk may cross rows and planes, and each bin tests for the
// self-conjugate columns. 32-bit: the drivers refuse samples of 2^32 elements or more.
struct SpectrumCursor {
  uint32_t k, h, half_width, height;
  PV_HD SpectrumCursor(uint32_t i, uint32_t half_width_, uint32_t height_) : half_width(half_width_), height(height_) {
    const uint32_t row = i / half_width;
    k = i - row * half_width;
    h = row % height;
  }
  PV_HD SpectrumCursor(int64_t i, const Geometry& g)
      : SpectrumCursor(uint32_t(i), uint32_t(g.half_width), uint32_t(g.height)) {}
  // At a known row and column: no division.
  PV_HD SpectrumCursor(uint32_t k_, uint32_t h_, const Geometry& g)
      : k(k_), h(h_), half_width(uint32_t(g.half_width)), height(uint32_t(g.height)) {}
  PV_HD uint32_t hk() const { return h * half_width + k; }
  PV_HD bool self_conjugate(int64_t width) const { return math::is_self_conjugate_column(k, width); }
  PV_HD void advance() {
    if (++k == half_width) {
      k = 0;
      if (++h == height) h = 0;
    }
  }
};

// InteriorBin: a bin the caller knows to lie among the interior columns (1 <= k < interior_end)
// of row h. The CPU walks a row's interior with it: no division and no column test, so the loop
// over the row vectorizes.
struct InteriorBin {
  uint32_t k, h, half_width, height;
  PV_HD uint32_t hk() const { return h * half_width + k; }
  PV_HD constexpr bool self_conjugate(int64_t) const { return false; }
  PV_HD void advance() { ++k; }
};

// ---------------------------------------------------------------------------
// Per-sample sums and statistics
// ---------------------------------------------------------------------------

// What chunks add to their sample's sums, as named fields rather than arrays: the CPU's
// vectorized row loops keep them in registers (GCC does not vectorize an `omp simd` loop that
// holds a local array). In float64, so that one-pass variances do not cancel for float32 data.
//   moments (head standardization):      re = Σv, im = Σv_im, dot = Σ|v|²
//   head gradient (its backward):        re = Σg, im = Σg_im, dot = Σ⟨g, v̂⟩
//   image gradient (the image's):        re = Σ∂L/∂x̂,         dot = Σ∂L/∂x̂·x̂
struct Sums {
  double re = 0.0, im = 0.0, dot = 0.0;
  PV_HD Sums& operator+=(const Sums& o) {
    re += o.re;
    im += o.im;
    dot += o.dot;
    return *this;
  }
  bool finite() const { return std::isfinite(re) && std::isfinite(im) && std::isfinite(dot); }
};

// The image moments by Parseval, from the spectrum pass: Σ_k w_k|F_k|² and Σ_c Re X_c[0, 0].
struct SpectrumEnergy {
  double weighted_sq = 0.0, dc = 0.0;
  PV_HD SpectrumEnergy& operator+=(const SpectrumEnergy& o) {
    weighted_sq += o.weighted_sq;
    dc += o.dc;
    return *this;
  }
  bool finite() const { return std::isfinite(weighted_sq) && std::isfinite(dc); }
};

// Head statistics from the moments of the n values of a sample.
PV_HD Standardization head_standardization(const Sums& moments, int64_t n, double eps) {
  return math::standardization_from_sums(moments.re, moments.im, moments.dot, n, eps);
}

// Image statistics by Parseval: the inverse transform is unnormalized, so Σx = Re ΣX[0, 0] and
// Σx² = Σ w|F|² / (H·W).
PV_HD Standardization image_standardization(const SpectrumEnergy& e, const Geometry& g, double eps) {
  const double plane = double(g.height * g.width);
  return math::standardization_from_sums(e.dc, 0.0, e.weighted_sq / plane, g.image_numel(), eps);
}

// A statistics row as the forward stores it, for the backward: (mean, std) or, complex,
// (mean_re, mean_im, std).
PV_HD void store_standardization(const Standardization& s, bool complex, double* row) {
  row[0] = s.mean_re;
  if (complex) row[1] = s.mean_im;
  row[complex ? 2 : 1] = s.std;
}

PV_HD Standardization stored_standardization(const double* row, bool complex, double eps) {
  Standardization s;
  s.mean_re = row[0];
  s.mean_im = complex ? row[1] : 0.0;
  s.std = row[complex ? 2 : 1];
  s.inv_t = 1.0 / (s.std + eps);
  return s;
}

// The tail backward folded into the spectrum (see math::tail_spectrum_grad), for interior and
// self-conjugate columns, from the image statistics and the image gradient's sums.
struct TailGrads {
  TailGrad interior, self_conjugate;
};

PV_HD TailGrads tail_grads(const Geometry& g, const Standardization& image, const Sums& image_grad) {
  const double plane = double(g.height * g.width);
  const auto sg = math::standardization_grad(image_grad.re, 0.0, image_grad.dot, g.image_numel(), image);
  TailGrads t;
  t.interior = TailGrad{2.0 / plane, sg.scale, sg.along * image.inv_t, sg.shift_re, image.mean_re * plane};
  t.self_conjugate = t.interior;
  t.self_conjugate.weight_over_hw = 1.0 / plane;
  return t;
}

// ---------------------------------------------------------------------------
// Heads: how the bins X of a chunk are made from the parameters, and the chain rule back.
// ---------------------------------------------------------------------------

template <typename T>
struct MacoHead {
  static constexpr bool kComplex = false;
  const T* phase;      // (B, C, H, Wr)
  const T* magnitude;  // (C, H, Wr), or (B, C, H, Wr) with magnitude_stride = n
  int64_t magnitude_stride, n;
  T phase_scale;  // the angle is phase_scale·φ̂; the chunk keeps φ̂ for the standardization backward

  bool wide_loads_aligned() const { return wide_aligned(phase) && wide_aligned(magnitude); }

  // The head of samples b0, b0 + 1, ...: sample b of it is sample b0 + b of this one.
  MacoHead from_sample(int64_t b0) const {
    return {phase + b0 * n, magnitude + b0 * magnitude_stride, magnitude_stride, n, phase_scale};
  }

  // What a chunk keeps between its bins and their gradient: sin and cos are computed once.
  template <int V>
  struct Chunk {
    T v_hat[V], sn[V], cs[V], mag[V];
  };

  template <int V>
  PV_HD void load(const Standardization& s, int64_t b, int64_t i, Chunk<V>& c) const {
    const Vec<T, V> ph = chunks::load<V>(phase + b * n + i);
    const Vec<T, V> m = chunks::load<V>(magnitude + b * magnitude_stride + i);
    const T mean = T(s.mean_re), inv_t = T(s.inv_t);
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      c.v_hat[j] = (ph.v[j] - mean) * inv_t;
      math::fast_sincos(phase_scale * c.v_hat[j], &c.sn[j], &c.cs[j]);
      c.mag[j] = m.v[j];
    }
  }

  template <int V>
  PV_HD void bin(const Chunk<V>& c, int j, uint32_t /*hk*/, T* re, T* im) const {
    math::maco_spectrum(c.mag[j], c.sn[j], c.cs[j], re, im);
  }

  // ∂L/∂v̂ of the chunk from ∂L/∂X of its bins: stored at out, and added to the head gradient's sums.
  template <int V>
  PV_HD void store_grad(const Chunk<V>& c, int64_t b, int64_t i, const uint32_t* /*hk*/, const T* g_re,
                        const T* g_im, T* out, Sums& acc) const {
    Vec<T, V> g;
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      g.v[j] = phase_scale * math::maco_phase_grad(c.mag[j], c.sn[j], c.cs[j], g_re[j], g_im[j]);
      acc.re += g.v[j];
      acc.dot += double(g.v[j]) * c.v_hat[j];
    }
    chunks::store<V>(out + b * n + i, g);
  }
};

template <typename T>
struct FourierHead {
  static constexpr bool kComplex = true;
  const T* spectrum;  // (B, C, H, Wr, 2)
  const T* scale;     // (H, Wr)
  int64_t n;

  bool wide_loads_aligned() const { return wide_aligned(spectrum); }

  FourierHead from_sample(int64_t b0) const { return {spectrum + 2 * b0 * n, scale, n}; }

  template <int V>
  struct Chunk {
    T z_re[V], z_im[V];  // the standardized spectrum
  };

  template <int V>
  PV_HD void load(const Standardization& s, int64_t b, int64_t i, Chunk<V>& c) const {
    const Vec<T, 2 * V> z = chunks::load<2 * V>(spectrum + 2 * (b * n + i));
    const T mean_re = T(s.mean_re), mean_im = T(s.mean_im), inv_t = T(s.inv_t);
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      c.z_re[j] = (z.v[2 * j] - mean_re) * inv_t;
      c.z_im[j] = (z.v[2 * j + 1] - mean_im) * inv_t;
    }
  }

  template <int V>
  PV_HD void bin(const Chunk<V>& c, int j, uint32_t hk, T* re, T* im) const {
    *re = c.z_re[j] * scale[hk];
    *im = c.z_im[j] * scale[hk];
  }

  template <int V>
  PV_HD void store_grad(const Chunk<V>& c, int64_t b, int64_t i, const uint32_t* hk, const T* g_re, const T* g_im,
                        T* out, Sums& acc) const {
    Vec<T, 2 * V> g;
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      const T gr = g_re[j] * scale[hk[j]], gi = g_im[j] * scale[hk[j]];
      g.v[2 * j] = gr;
      g.v[2 * j + 1] = gi;
      acc.re += gr;
      acc.im += gi;
      acc.dot += double(gr) * c.z_re[j] + double(gi) * c.z_im[j];
    }
    chunks::store<2 * V>(out + 2 * (b * n + i), g);
  }
};

// One bin of the head, alone: the conjugate partner of a bin in a self-conjugate column.
template <typename Head, typename T>
PV_HD void single_bin(const Head& head, const Standardization& s, int64_t b, int64_t i, uint32_t hk, T* re, T* im) {
  typename Head::template Chunk<1> c;
  head.template load<1>(s, b, i, c);
  head.template bin<1>(c, 0, hk, re, im);
}

// Bin i of a self-conjugate column as irfft2 sees it, (X[h] + conj X[-h]) / 2; cuFFT's c2r, unlike
// MKL's, is not that projection of a non-Hermitian input, so the spectrum is stored this way.
template <typename Head, typename Cursor, typename T>
PV_HD void hermitian_bin(const Head& head, const Standardization& s, const Cursor& at, int64_t b, int64_t i, T* re,
                         T* im) {
  const uint32_t partner = uint32_t(math::conjugate_row(at.h, at.height));
  T pre, pim;
  single_bin(head, s, b, i + (int64_t(partner) - int64_t(at.h)) * at.half_width, partner * at.half_width + at.k,
             &pre, &pim);
  math::hermitian_part(*re, *im, pre, pim, re, im);
}

// ---------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------

// The moments of values [i, i + V) of sample b (kComplex: pairs).
template <int V, bool kComplex, typename T>
PV_HD void moments_chunk(const T* v, int64_t n, int64_t b, int64_t i, Sums& acc) {
  if constexpr (kComplex) {
    const Vec<T, 2 * V> z = load<2 * V>(v + 2 * (b * n + i));
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      const double re = z.v[2 * j], im = z.v[2 * j + 1];
      acc.re += re;
      acc.im += im;
      acc.dot += re * re + im * im;
    }
  } else {
    const Vec<T, V> x = load<V>(v + b * n + i);
    PV_UNROLL
    for (int j = 0; j < V; ++j) {
      const double a = x.v[j];
      acc.re += a;
      acc.dot += a * a;
    }
  }
}

// Bins [i, i + V) of sample b, the first at `at`, into x (interleaved re, im), and their share of
// the image moments by Parseval into acc (w = 2 off the self-conjugate columns).
template <int V, typename T, typename Head, typename Cursor>
PV_HD void spectrum_chunk(const Head& head, const Geometry& g, const Standardization& s, int64_t b, int64_t i,
                          Cursor at, T* x, SpectrumEnergy& acc) {
  typename Head::template Chunk<V> c;
  head.template load<V>(s, b, i, c);
  Vec<T, 2 * V> out{};  // every element is set below; GCC cannot see it through its omp simd lowering
  PV_UNROLL
  for (int j = 0; j < V; ++j, at.advance()) {
    T re, im;
    head.template bin<V>(c, j, at.hk(), &re, &im);
    if (at.self_conjugate(g.width)) {
      hermitian_bin(head, s, at, b, i + j, &re, &im);
      acc.weighted_sq += double(re) * re + double(im) * im;
      if (at.h == 0 && at.k == 0) acc.dc += re;
    } else {
      acc.weighted_sq += 2.0 * (double(re) * re + double(im) * im);
    }
    out.v[2 * j] = re;
    out.v[2 * j + 1] = im;
  }
  store<2 * V>(x + 2 * (b * g.spectrum_numel() + i), out);
}

// x̂ = (x·input_scale - mean)·inv_t at pixels [p, p + V) of channel c of sample b, from the
// unnormalized inverse transform x (input_scale = 1/(H·W)).
template <int V, typename T>
PV_HD Vec<T, V> standardized_pixels(const T* x, int channels, int64_t plane, int64_t b, int c, int64_t p,
                                    T input_scale, T mean, T inv_t) {
  Vec<T, V> v = load<V>(x + (b * channels + c) * plane + p);
  PV_UNROLL
  for (int j = 0; j < V; ++j) v.v[j] = (v.v[j] * input_scale - mean) * inv_t;
  return v;
}

// y_d = Σ_c x̂_c·K[c, d] at position j of a chunk, the recolored value before the sigmoid.
template <int V, int kMaxC, typename T>
PV_HD T recolored(const Vec<T, V> (&xh)[kMaxC], const T (&k)[kMaxC][kMaxC], int channels, int d, int j) {
  T y = 0;
  PV_UNROLL
  for (int c = 0; c < kMaxC; ++c)
    if (c < channels) y += xh[c].v[j] * k[c][d];
  return y;
}

// out = lo + span·sigmoid(K^T x̂) at pixels [p, p + V) of sample b, every channel (C <= kMaxC).
// x̂ is not stored: the backward forms it again from x.
template <int V, int kMaxC, typename T>
PV_HD void image_forward_chunk(const T* x, T* out, const T (&k)[kMaxC][kMaxC], int channels, int64_t plane,
                               int64_t b, int64_t p, T input_scale, T mean, T inv_t, T lo, T span) {
  Vec<T, V> xh[kMaxC];
  PV_UNROLL
  for (int c = 0; c < kMaxC; ++c)
    if (c < channels) xh[c] = standardized_pixels<V>(x, channels, plane, b, c, p, input_scale, mean, inv_t);
  PV_UNROLL
  for (int d = 0; d < kMaxC; ++d)
    if (d < channels) {
      Vec<T, V> o;
      PV_UNROLL
      for (int j = 0; j < V; ++j) o.v[j] = lo + span * math::sigmoid(recolored<V>(xh, k, channels, d, j));
      store<V>(out + (b * channels + d) * plane + p, o);
    }
}

// The same for one pixel and any C (more than a kernel keeps in registers; rare): x̂ is formed again
// for each output channel instead of being held.
template <typename T>
PV_HD void image_forward_pixel_any_channels(const T* x, T* out, const T* k, int channels, int64_t plane, int64_t b,
                                            int64_t p, T input_scale, T mean, T inv_t, T lo, T span) {
  const T* xs = x + b * channels * plane + p;
  T* os = out + b * channels * plane + p;
  for (int d = 0; d < channels; ++d) {
    T y = 0;
    for (int c = 0; c < channels; ++c) y += (xs[c * plane] * input_scale - mean) * inv_t * k[c * channels + d];
    os[d * plane] = lo + span * math::sigmoid(y);
  }
}

// ---------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------

// ∂L/∂x̂ at pixels [p, p + V) of sample b, every channel, into grad_x, and into the image gradient's
// sums. x̂ is formed from x as in the forward.
template <int V, int kMaxC, typename T>
PV_HD void image_backward_chunk(const T* grad_out, const T* x, T* grad_x, const T (&k)[kMaxC][kMaxC], int channels,
                                int64_t plane, int64_t b, int64_t p, T input_scale, T mean, T inv_t, T span,
                                Sums& acc) {
  // Every load before any store, so that all of them are in flight together.
  Vec<T, V> xh[kMaxC], go[kMaxC];
  PV_UNROLL
  for (int c = 0; c < kMaxC; ++c)
    if (c < channels) {
      xh[c] = standardized_pixels<V>(x, channels, plane, b, c, p, input_scale, mean, inv_t);
      go[c] = load<V>(grad_out + (b * channels + c) * plane + p);
    }
  Vec<T, V> gx[kMaxC] = {};
  PV_UNROLL
  for (int d = 0; d < kMaxC; ++d)
    if (d < channels) {
      PV_UNROLL
      for (int j = 0; j < V; ++j) {
        const T sg = math::sigmoid(recolored<V>(xh, k, channels, d, j));
        const T gy = go[d].v[j] * span * sg * (T(1) - sg);
        PV_UNROLL
        for (int c = 0; c < kMaxC; ++c) gx[c].v[j] += k[c][d] * gy;
      }
    }
  PV_UNROLL
  for (int c = 0; c < kMaxC; ++c)
    if (c < channels) {
      PV_UNROLL
      for (int j = 0; j < V; ++j) {
        acc.re += gx[c].v[j];
        acc.dot += double(gx[c].v[j]) * xh[c].v[j];
      }
      store<V>(grad_x + (b * channels + c) * plane + p, gx[c]);
    }
}

// The same for one pixel and any C: ∂L/∂x̂ is accumulated in grad_x itself.
template <typename T>
PV_HD void image_backward_pixel_any_channels(const T* grad_out, const T* x, T* grad_x, const T* k, int channels,
                                             int64_t plane, int64_t b, int64_t p, T input_scale, T mean, T inv_t,
                                             T span, Sums& acc) {
  const int64_t base = b * channels * plane + p;
  const auto x_hat = [&](int c) { return (x[base + c * plane] * input_scale - mean) * inv_t; };
  for (int c = 0; c < channels; ++c) grad_x[base + c * plane] = 0;
  for (int d = 0; d < channels; ++d) {
    T y = 0;
    for (int c = 0; c < channels; ++c) y += x_hat(c) * k[c * channels + d];
    const T sg = math::sigmoid(y);
    const T gy = grad_out[base + d * plane] * span * sg * (T(1) - sg);
    for (int c = 0; c < channels; ++c) grad_x[base + c * plane] += k[c * channels + d] * gy;
  }
  for (int c = 0; c < channels; ++c) {
    const T gc = grad_x[base + c * plane];
    acc.re += gc;
    acc.dot += double(gc) * x_hat(c);
  }
}

// ∂L/∂v̂ at bins [i, i + V) of sample b, the first at `at`, from G = rfft2(∂L/∂x̂) (interleaved),
// with the image standardization backward folded in (tail); into the head gradient's sums, for the
// head's own standardization backward.
template <int V, typename T, typename Head, typename Cursor>
PV_HD void spectrum_grad_chunk(const Head& head, const Geometry& g, const Standardization& s, const TailGrads& tail,
                               int64_t b, int64_t i, Cursor at, const T* big_g, T* grad, Sums& acc) {
  typename Head::template Chunk<V> c;
  head.template load<V>(s, b, i, c);
  const Vec<T, 2 * V> G = load<2 * V>(big_g + 2 * (b * g.spectrum_numel() + i));
  T g_re[V], g_im[V];
  uint32_t hk[V];
  PV_UNROLL
  for (int j = 0; j < V; ++j, at.advance()) {
    hk[j] = at.hk();
    T re, im;
    head.template bin<V>(c, j, hk[j], &re, &im);
    if (at.self_conjugate(g.width)) {
      hermitian_bin(head, s, at, b, i + j, &re, &im);
      math::tail_spectrum_grad(tail.self_conjugate, at.h == 0 && at.k == 0, G.v[2 * j], G.v[2 * j + 1], re, im,
                               &g_re[j], &g_im[j]);
    } else {
      math::tail_spectrum_grad(tail.interior, false, G.v[2 * j], G.v[2 * j + 1], re, im, &g_re[j], &g_im[j]);
    }
  }
  head.template store_grad<V>(c, b, i, hk, g_re, g_im, grad, acc);
}

// The head's standardization backward, g_v = scale·g + shift + along·v̂, in place on values
// [i, i + V) of sample b (kComplex: pairs).
template <int V, bool kComplex, typename T>
PV_HD void head_standardization_grad_chunk(const T* v, T* grad, int64_t n, int64_t b, int64_t i,
                                           const Standardization& s, const math::StandardizationGrad& sg) {
  constexpr int kValues = kComplex ? 2 * V : V;
  const int64_t offset = (kComplex ? 2 : 1) * (b * n + i);
  const Vec<T, kValues> x = load<kValues>(v + offset);
  Vec<T, kValues> gv = load<kValues>(grad + offset);
  const T scale = T(sg.scale), along = T(sg.along), inv_t = T(s.inv_t);
  PV_UNROLL
  for (int j = 0; j < kValues; ++j) {
    const bool imaginary = kComplex && (j % 2 == 1);
    const T mean = T(imaginary ? s.mean_im : s.mean_re), shift = T(imaginary ? sg.shift_im : sg.shift_re);
    gv.v[j] = scale * gv.v[j] + shift + along * ((x.v[j] - mean) * inv_t);
  }
  store<kValues>(grad + offset, gv);
}

}  // namespace chunks
}  // namespace phasevis
