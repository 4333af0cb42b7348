// The formulas of the fused synthesis, shared by the CPU kernels, the CUDA kernels
// and the C++ tests, so that the math lives in one place.
//
// Notation, per sample b (every statistic runs over all non-batch elements of b):
//   head:  v̂ = (v - mean v) / (std v + eps)           (v is the phase, or the complex spectrum)
//          X = M·e^{i·φ̂}  (MACO)   or   X = ẑ·scale  (Fourier)
//   tail:  x = irfft2(X, s=(H, W)),  x̂ = (x - mean x) / (std x + eps)
//          y[d] = Σ_c x̂[c]·K[c, d],  out = lo + (hi - lo)·sigmoid(y)
// std is unbiased (N - 1), as torch.std.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// On the host, always inlined: a chunk function left out of line is compiled for the baseline ISA
// only, not for the caller's target clone (below), and there nearbyintf is a libm call. GCC kept
// the backward's self-conjugate chunks out of line otherwise.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define PV_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define PV_HD inline __attribute__((always_inline))
#else
#define PV_HD inline
#endif

// Full unrolling of the chunks' fixed trip counts (over a chunk's elements, over channels): for the
// device pass, and for GCC on the host, whose vectorizer needs the channel loops gone (their
// bodies exceed its own unrolling limits) before it can vectorize a row of one-element chunks.
// Not for nvcc's host pass, which warns about either pragma.
#if defined(__CUDA_ARCH__)
#define PV_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define PV_UNROLL _Pragma("GCC unroll 16")
#else
#define PV_UNROLL
#endif

// The CPU kernels are compiled once per ISA and picked at load time (GCC ifunc), so a
// wheel built here runs on any x86-64 yet uses AVX-512 where the CPU has it.
#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(PV_NO_CLONES)
#define PV_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PV_CPU_CLONES
#endif

namespace phasevis {

// Sizes of a call: B samples of C channels, an H x W image, Wr = W/2 + 1 rfft columns.
struct Geometry {
  int64_t batch, channels, height, width, half_width;
  PV_HD int64_t spectrum_numel() const { return channels * height * half_width; }
  PV_HD int64_t image_numel() const { return channels * height * width; }
};

namespace math {

// ---------------------------------------------------------------------------
// rfft layout
// ---------------------------------------------------------------------------

// Column k of a one-sided spectrum of width W maps onto itself under conjugation
// (k = 0, and k = W/2 for even W). irfft2 keeps only the Hermitian part there.
PV_HD bool is_self_conjugate_column(int64_t k, int64_t width) { return k == 0 || 2 * k == width; }

// How many bins of the full spectrum column k stands for.
PV_HD double hermitian_weight(int64_t k, int64_t width) {
  return is_self_conjugate_column(k, width) ? 1.0 : 2.0;
}

// Row holding the conjugate partner of row h inside a self-conjugate column.
PV_HD int64_t conjugate_row(int64_t h, int64_t height) { return h == 0 ? 0 : height - h; }

// The self-conjugate columns: 0, and W/2 when W is even (W = 1 has only column 0).
PV_HD int self_conjugate_column_count(int64_t width) { return width % 2 == 0 ? 2 : 1; }
PV_HD int64_t self_conjugate_column(int index, int64_t width) { return index == 0 ? 0 : width / 2; }

// First column past the freely-parameterized interior of the rfft layout.
PV_HD int64_t interior_end(int64_t width) { return width / 2 + 1 - (width % 2 == 0 ? 1 : 0); }

// ---------------------------------------------------------------------------
// Standardization
// ---------------------------------------------------------------------------

struct Standardization {
  double mean_re, mean_im, std, inv_t;  // v̂ = (v - mean)·inv_t,  inv_t = 1 / (std + eps)
};

// From Σv, Σv_im and Σ|v|² over n elements (v_im = 0 for real data). The sums come in
// double so that the one-pass variance does not cancel for float32 data.
PV_HD Standardization standardization_from_sums(double sum_re, double sum_im, double sum_sq, int64_t n,
                                                double eps) {
  Standardization s;
  s.mean_re = sum_re / double(n);
  s.mean_im = sum_im / double(n);
  double var = (sum_sq - double(n) * (s.mean_re * s.mean_re + s.mean_im * s.mean_im)) / double(n - 1);
  s.std = sqrt(var > 0.0 ? var : 0.0);
  s.inv_t = 1.0 / (s.std + eps);
  return s;
}

// Backward of v̂ = (v - mean)/(std + eps) with unbiased std, as an affine map
//   g_v = scale·g + shift + along·v̂,
// from Σg and Σ⟨g, v̂⟩ over the sample (for complex data ⟨,⟩ is the real inner product
// and shift is complex). At std = 0 the std term is taken as 0, its subgradient.
struct StandardizationGrad {
  double scale, shift_re, shift_im, along;
};

PV_HD StandardizationGrad standardization_grad(double sum_g_re, double sum_g_im, double dot, int64_t n,
                                               const Standardization& s) {
  StandardizationGrad g;
  g.scale = s.inv_t;
  g.shift_re = -sum_g_re / double(n) * s.inv_t;
  g.shift_im = -sum_g_im / double(n) * s.inv_t;
  g.along = s.std > 0.0 ? -dot / (double(n - 1) * s.std) : 0.0;
  return g;
}

// ---------------------------------------------------------------------------
// Scalar per-element math
// ---------------------------------------------------------------------------

// exp(x) for float: Cody-Waite reduction and a degree-6 polynomial (rel. error ~1e-7),
// branch-free so that GCC vectorizes the loops that call it; libm's expf does not.
PV_HD float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  // Two unconditional selects: a nested one would evaluate its comparison conditionally, which
  // keeps GCC from if-converting (and so vectorizing) the loops around it.
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = nearbyintf(x * 1.44269504088896341f);
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float two_n;
  memcpy(&two_n, &bits, sizeof(two_n));
  return p * two_n;
#endif
}
PV_HD double fast_exp(double x) { return exp(x); }

// sin and cos for float: quadrant reduction with a three-part π/2 (accurate to a few ulp for
// |x| < 1e4; a standardized phase is bounded by sqrt(N - 1)) and minimax polynomials.
PV_HD void fast_sincos(float x, float* s, float* c) {
#if defined(__CUDA_ARCH__)
  sincosf(x, s, c);
#else
  const float q = nearbyintf(x * 0.636619772367581343f);
  float r = x - q * 1.5703125f;
  r = r - q * 4.837512969970703125e-4f;
  r = r - q * 7.54978995489188216e-8f;
  const float r2 = r * r;
  float ps = -1.9515295891e-4f;
  ps = ps * r2 + 8.3321608736e-3f;
  ps = ps * r2 - 1.6666654611e-1f;
  const float sin_r = r + r * r2 * ps;
  float pc = 2.443315711809948e-5f;
  pc = pc * r2 - 1.388731625493765e-3f;
  pc = pc * r2 + 4.166664568298827e-2f;
  const float cos_r = 1.0f - 0.5f * r2 + r2 * r2 * pc;
  const int32_t quadrant = int32_t(q) & 3;
  const float a = (quadrant & 1) ? cos_r : sin_r;
  const float b = (quadrant & 1) ? sin_r : cos_r;
  *s = (quadrant & 2) ? -a : a;
  *c = ((quadrant + 1) & 2) ? -b : b;
#endif
}
PV_HD void fast_sincos(double x, double* s, double* c) {
  *s = sin(x);
  *c = cos(x);
}

template <typename T>
PV_HD T sigmoid(T y) {
  return T(1) / (T(1) + fast_exp(-y));
}

// MACO head: X = M·e^{iφ̂}, from s = sin φ̂ and c = cos φ̂ (the backward needs them too).
template <typename T>
PV_HD void maco_spectrum(T magnitude, T s, T c, T* re, T* im) {
  *re = magnitude * c;
  *im = magnitude * s;
}

// MACO head backward: ∂L/∂φ̂ from ∂L/∂X = (g_re, g_im).
template <typename T>
PV_HD T maco_phase_grad(T magnitude, T s, T c, T g_re, T g_im) {
  return magnitude * (g_im * c - g_re * s);
}

// What irfft2 sees of a self-conjugate column: the Hermitian part (X[h] + conj X[-h]) / 2.
template <typename T>
PV_HD void hermitian_part(T re, T im, T partner_re, T partner_im, T* out_re, T* out_im) {
  *out_re = T(0.5) * (re + partner_re);
  *out_im = T(0.5) * (im - partner_im);
}

// Tail backward in the frequency domain. With g_x = scale·g + shift + along·x̂ (standardization
// backward of the image) and A = adjoint of irfft2 = hermitian_weight·rfft2(·)/(H·W), linearity gives
//   ∂L/∂X = A(g_x) = w/(HW)·(scale·G + along·rfft2(x̂)) + shift·δ_DC,
// and rfft2(x̂) = (F - mean·H·W·δ_DC)·inv_t where F is X made Hermitian (what irfft2 sees).
// So the image-sized correction pass of the standardization backward folds into the spectrum pass.
struct TailGrad {
  double weight_over_hw;  // hermitian_weight / (H·W)
  double scale, along_inv_t, shift;
  double dc_offset;  // mean·H·W, subtracted from F at the DC bin only
};

template <typename T>
PV_HD void tail_spectrum_grad(const TailGrad& t, bool dc, T G_re, T G_im, T F_re, T F_im, T* g_re, T* g_im) {
  const T f_re = dc ? T(double(F_re) - t.dc_offset) : F_re;
  *g_re = T(t.weight_over_hw) * (T(t.scale) * G_re + T(t.along_inv_t) * f_re) + (dc ? T(t.shift) : T(0));
  *g_im = T(t.weight_over_hw) * (T(t.scale) * G_im + T(t.along_inv_t) * F_im);
}

}  // namespace math
}  // namespace phasevis
