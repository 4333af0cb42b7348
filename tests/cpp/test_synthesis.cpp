// C++ tests of the fused synthesis: the scalar formulas of csrc/synthesis_math.h; the registered CPU
// ops, which run the chunk functions of csrc/synthesis_chunks.h that the CUDA kernels run too,
// against a libtorch transcription of the reference (forward, backward, statistics, non-finite
// inputs); and the chunk widths only the CUDA kernels use, against one-element chunks.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "synthesis_chunks.h"
#include "synthesis_math.h"

namespace math = phasevis::math;
namespace chunks = phasevis::chunks;
using phasevis::Geometry;

static int failures = 0;
#define EXPECT(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      ++failures;                                                 \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                             \
  } while (0)

static void test_fast_exp_and_sincos() {
  double worst_exp = 0, worst_sin = 0, worst_cos = 0;
  for (float x = -80.0f; x < 80.0f; x += 0.01237f) {
    worst_exp = std::fmax(worst_exp, std::fabs(math::fast_exp(x) - std::exp(double(x))) / std::exp(double(x)));
  }
  for (float x = -3000.0f; x < 3000.0f; x += 0.0917f) {
    float s, c;
    math::fast_sincos(x, &s, &c);
    worst_sin = std::fmax(worst_sin, std::fabs(s - std::sin(double(x))));
    worst_cos = std::fmax(worst_cos, std::fabs(c - std::cos(double(x))));
  }
  std::printf("fast_exp rel err %.2e, sin abs err %.2e, cos abs err %.2e\n", worst_exp, worst_sin, worst_cos);
  EXPECT(worst_exp < 5e-7);
  EXPECT(worst_sin < 1e-6);
  EXPECT(worst_cos < 1e-6);
  EXPECT(std::fabs(math::sigmoid(0.0f) - 0.5f) < 1e-7f);
  EXPECT(math::sigmoid(-200.0f) >= 0.0f && math::sigmoid(200.0f) <= 1.0f);
}

static void test_layout() {
  EXPECT(math::hermitian_weight(0, 8) == 1.0 && math::hermitian_weight(4, 8) == 1.0);
  EXPECT(math::hermitian_weight(3, 8) == 2.0 && math::hermitian_weight(4, 9) == 2.0);
  EXPECT(math::conjugate_row(0, 7) == 0 && math::conjugate_row(2, 7) == 5 && math::conjugate_row(4, 8) == 4);
  EXPECT(math::interior_end(8) == 4 && math::interior_end(9) == 5 && math::interior_end(1) == 1);
  EXPECT(math::self_conjugate_column_count(8) == 2 && math::self_conjugate_column_count(1) == 1);
  EXPECT(math::self_conjugate_column(1, 8) == 4);
}

// The standardization backward against central differences of the forward.
static void test_standardization_grad() {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  const int n = 17;
  const double eps = 1e-3;
  std::vector<double> v(n), g(n);
  for (int i = 0; i < n; ++i) v[i] = normal(rng) * 2 + 1, g[i] = normal(rng);
  auto loss = [&](const std::vector<double>& x) {
    double s = 0, sq = 0;
    for (double a : x) s += a, sq += a * a;
    const auto st = math::standardization_from_sums(s, 0, sq, n, eps);
    double l = 0;
    for (int i = 0; i < n; ++i) l += g[i] * (x[i] - st.mean_re) * st.inv_t;
    return l;
  };
  double s = 0, sq = 0;
  for (double a : v) s += a, sq += a * a;
  const auto st = math::standardization_from_sums(s, 0, sq, n, eps);
  double sum_g = 0, dot = 0;
  for (int i = 0; i < n; ++i) sum_g += g[i], dot += g[i] * (v[i] - st.mean_re) * st.inv_t;
  const auto sg = math::standardization_grad(sum_g, 0, dot, n, st);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    auto hi = v, lo = v;
    hi[i] += 1e-6, lo[i] -= 1e-6;
    const double numeric = (loss(hi) - loss(lo)) / 2e-6;
    const double analytic = sg.scale * g[i] + sg.shift_re + sg.along * (v[i] - st.mean_re) * st.inv_t;
    worst = std::fmax(worst, std::fabs(numeric - analytic));
  }
  std::printf("standardization grad max err %.2e\n", worst);
  EXPECT(worst < 1e-7);
}

static void test_spectrum_cursor() {
  int bad = 0;
  for (uint32_t wr : {1u, 2u, 5u, 113u}) {
    for (uint32_t h : {1u, 3u, 8u}) {
      const Geometry g{1, 3, h, 2 * wr - 2, wr};
      const uint32_t n = 3 * h * wr;
      for (uint32_t start = 0; start < n; start += 3) {
        chunks::SpectrumCursor at(start, wr, h);
        const chunks::SpectrumCursor placed(at.k, at.h, g);
        bad += placed.hk() != at.hk();
        for (uint32_t i = start; i < std::min(n, start + 9); ++i, at.advance())
          bad += at.k != i % wr || at.h != (i / wr) % h || at.hk() != (i / wr) % h * wr + i % wr;
      }
    }
  }
  EXPECT(bad == 0);
}

// ---------------------------------------------------------------------------
// The CPU ops against the reference
// ---------------------------------------------------------------------------

using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using ForwardOp = c10::TypedOperatorHandle<Outputs(const at::Tensor&, const at::Tensor&, int64_t, int64_t, double,
                                                   double, const at::Tensor&, double)>;
using BackwardOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, double, double, double)>;

// MACO's ops take a trailing phase_scale.
using MacoForwardOp = c10::TypedOperatorHandle<Outputs(const at::Tensor&, const at::Tensor&, int64_t, int64_t, double,
                                                       double, const at::Tensor&, double, double)>;
using MacoBackwardOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           const at::Tensor&, double, double, double, double)>;

static MacoForwardOp maco_forward_op() {
  return c10::Dispatcher::singleton().findSchemaOrThrow("phasevis::maco_synthesis", "").typed<Outputs(
      const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, double, const at::Tensor&, double, double)>();
}

static MacoBackwardOp maco_backward_op() {
  return c10::Dispatcher::singleton().findSchemaOrThrow("phasevis::maco_synthesis_backward", "").typed<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const at::Tensor&, const at::Tensor&, double, double, double, double)>();
}

static ForwardOp forward_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Outputs(
      const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, double, const at::Tensor&, double)>();
}

static BackwardOp backward_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const at::Tensor&, const at::Tensor&, double, double, double)>();
}

// phasevis_ext/reference.py, transcribed: what each op must compute, with its intermediate values.
struct Reference {
  at::Tensor image, x, head_stats, image_stats;
};

static at::Tensor sample_mean(const at::Tensor& t) { return t.flatten(1).mean(1, true); }

// Unbiased, and for complex data sqrt(Σ|z - mean|² / (n - 1)), as torch.std.
static at::Tensor sample_std(const at::Tensor& t) {
  const at::Tensor centered = t.flatten(1) - sample_mean(t);
  return (centered.abs().square().sum(1, true) / double(centered.size(1) - 1)).sqrt();
}

static at::Tensor standardized(const at::Tensor& t, double eps) {
  std::vector<int64_t> shape(t.dim(), 1);
  shape[0] = t.size(0);
  return (t - sample_mean(t).view(shape)) / (sample_std(t).view(shape) + eps);
}

// `head`: the phase (B, C, H, Wr), or the spectrum as complex (B, C, H, Wr).
static Reference reference(bool maco, const at::Tensor& head, const at::Tensor& fixed, int64_t h, int64_t w,
                           const at::Tensor& k, double lo, double hi, double eps, double phase_scale) {
  const at::Tensor hat = standardized(head, eps);
  const at::Tensor spectrum = maco ? at::polar(fixed, hat * phase_scale) : hat * fixed;
  Reference r;
  r.x = at::fft_irfft2(spectrum, at::IntArrayRef{h, w}, {-2, -1}, "forward");
  const at::Tensor image = r.x / double(h * w);
  const at::Tensor y = at::einsum("bchw,cd->bdhw", {standardized(image, eps), k});
  r.image = lo + (hi - lo) * at::sigmoid(y);
  r.head_stats = maco ? at::cat({sample_mean(head), sample_std(head)}, 1)
                      : at::cat({at::real(sample_mean(head)), at::imag(sample_mean(head)), sample_std(head)}, 1);
  r.image_stats = at::cat({sample_mean(image), sample_std(image)}, 1);
  return r;
}

static double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / (want.abs().max().to(at::kDouble) + 1e-30))
      .item<double>();
}

// The forward's four outputs and the backward op's gradient, for both heads, against the reference
// in float64 (its gradient by autograd).
static void test_ops_against_reference(at::ScalarType dtype, double tolerance) {
  const MacoForwardOp maco = maco_forward_op();
  const ForwardOp fourier = forward_op("phasevis::fourier_synthesis");
  const MacoBackwardOp maco_bwd = maco_backward_op();
  const BackwardOp fourier_bwd = backward_op("phasevis::fourier_synthesis_backward");
  const double lo = -0.5, hi = 1.5, eps = 1e-4, phase_scale = 1.7;
  at::manual_seed(1);
  double worst = 0;
  // (B, C, H, W): odd and even widths, W = 1 and 2 (no interior column), C = 1 to 6 (above 4: the
  // any-channel pixel functions), rows long enough for the vectorized loops' bodies and remainders.
  for (auto shape : std::vector<std::array<int64_t, 4>>{
           {2, 3, 8, 10}, {1, 3, 9, 13}, {2, 3, 6, 7}, {1, 3, 5, 8}, {2, 1, 8, 1}, {2, 3, 7, 2}, {1, 4, 8, 8},
           {2, 2, 4, 6}, {1, 4, 3, 4}, {1, 5, 6, 8}, {2, 6, 5, 7}, {2, 3, 32, 40}, {1, 3, 24, 64}, {2, 1, 17, 129}}) {
    const Geometry g{shape[0], shape[1], shape[2], shape[3], shape[3] / 2 + 1};
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    const at::Tensor k = at::randn({g.channels, g.channels}, f64) * 0.5 + at::eye(g.channels, f64);
    const at::Tensor go = at::randn({g.batch, g.channels, g.height, g.width}, f64);
    const at::Tensor phase = at::randn({g.batch, g.channels, g.height, g.half_width}, f64);
    const at::Tensor magnitude = at::rand({g.channels, g.height, g.half_width}, f64) + 0.1;
    const at::Tensor z = at::randn({g.batch, g.channels, g.height, g.half_width, 2}, f64);
    const at::Tensor scale = at::rand({g.height, g.half_width}, f64) + 0.1;
    for (const bool is_maco : {true, false}) {
      const at::Tensor head = is_maco ? phase : z, fixed = is_maco ? magnitude : scale;
      const at::Tensor h_in = head.to(dtype), f_in = fixed.to(dtype), k_in = k.to(dtype), go_in = go.to(dtype);
      const Outputs got = is_maco ? maco.call(h_in, f_in, g.height, g.width, lo, hi, k_in, eps, phase_scale)
                                  : fourier.call(h_in, f_in, g.height, g.width, lo, hi, k_in, eps);
      const at::Tensor grad =
          is_maco ? maco_bwd.call(go_in, h_in, f_in, std::get<1>(got), std::get<2>(got), std::get<3>(got), k_in, lo,
                                  hi, eps, phase_scale)
                  : fourier_bwd.call(go_in, h_in, f_in, std::get<1>(got), std::get<2>(got), std::get<3>(got), k_in,
                                     lo, hi, eps);

      const at::Tensor leaf = (is_maco ? head : at::view_as_complex(head)).clone().set_requires_grad(true);
      const Reference want = reference(is_maco, leaf, fixed, g.height, g.width, k, lo, hi, eps, phase_scale);
      at::Tensor grad_want = torch::autograd::grad({want.image}, {leaf}, {go})[0];
      if (!is_maco) grad_want = at::view_as_real(grad_want);
      const double errors[] = {
          relative_error(std::get<0>(got), want.image), relative_error(std::get<1>(got), want.x),
          relative_error(std::get<2>(got), want.head_stats), relative_error(std::get<3>(got), want.image_stats),
          relative_error(grad, grad_want)};
      for (const double err : errors) {
        worst = std::fmax(worst, err);
        if (!(err < tolerance))
          std::printf("  %s (%lld, %lld, %lld, %lld): rel err %.2e\n", is_maco ? "maco" : "fourier",
                      (long long)g.batch, (long long)g.channels, (long long)g.height, (long long)g.width, err);
        EXPECT(err < tolerance);
      }
    }
  }
  std::printf("CPU ops vs the reference (%s): max rel err %.2e\n", c10::toString(dtype), worst);
}

// A non-finite input raises a ValueError naming it; finite values whose squares overflow float64 do not.
static void test_non_finite_inputs() {
  const auto maco = maco_forward_op();
  const auto fourier = forward_op("phasevis::fourier_synthesis");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor k = at::eye(3, f32);
  const auto message = [](const auto& call) -> std::string {
    try {
      call();
    } catch (const c10::ValueError& e) {
      return e.what_without_backtrace();
    } catch (const std::exception& e) {
      return std::string("not a ValueError: ") + e.what();
    }
    return "no error";
  };
  const auto poked = [](at::Tensor t, double value) {
    t = t.clone();
    t.view(-1)[t.numel() / 2] = value;
    return t;
  };
  const at::Tensor phase = at::randn({2, 3, 8, 5}, f32), magnitude = at::rand({3, 8, 5}, f32) + 0.1;
  const at::Tensor z = at::randn({2, 3, 8, 5, 2}, f32), scale = at::rand({8, 5}, f32) + 0.1;
  const auto maco_message = [&](const at::Tensor& p, const at::Tensor& m) {
    return message([&] { maco.call(p, m, 8, 8, 0.0, 1.0, k, 1e-4, 1.0); });
  };
  const auto fourier_message = [&](const at::Tensor& s, const at::Tensor& c) {
    return message([&] { fourier.call(s, c, 8, 8, 0.0, 1.0, k, 1e-4); });
  };
  EXPECT(maco_message(poked(phase, NAN), magnitude) == "phase contains NaN or infinite values");
  EXPECT(maco_message(poked(phase, -INFINITY), magnitude) == "phase contains NaN or infinite values");
  EXPECT(maco_message(phase, poked(magnitude, INFINITY)) == "magnitude contains NaN or infinite values");
  EXPECT(maco_message(phase, poked(magnitude, NAN)) == "magnitude contains NaN or infinite values");
  EXPECT(fourier_message(poked(z, NAN), scale) == "spectrum contains NaN or infinite values");
  EXPECT(fourier_message(z, poked(scale, INFINITY)) == "scale contains NaN or infinite values");
  EXPECT(maco_message(phase, magnitude) == "no error");
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  EXPECT(message([&] { maco.call(phase.to(f64) * 1e200, magnitude.to(f64) * 1e200, 8, 8, 0.0, 1.0, k.to(f64), 1e-4, 1.0); })
         == "no error");
}

// ---------------------------------------------------------------------------
// The wide chunks of the CUDA kernels against one-element chunks
// ---------------------------------------------------------------------------

// The CPU op runs one-element chunks; the CUDA kernels run chunks of kWide elements that may cross
// rows and planes (SpectrumCursor) wherever the sample and the pointers allow. Same values expected.
template <typename Head, typename T>
static double wide_against_narrow(const Head& head, const at::Tensor& values, const Geometry& g, const at::Tensor& k) {
  constexpr int W = chunks::kWide;
  constexpr bool kComplex = Head::kComplex;
  const int64_t n = g.spectrum_numel(), plane = g.height * g.width;
  const int channels = int(g.channels);
  T kk[4][4] = {};
  for (int c = 0; c < channels; ++c)
    for (int d = 0; d < channels; ++d) kk[c][d] = k[c][d].item<T>();
  const math::Standardization s{0.1, 0.05, 1.3, 1.0 / 1.3};
  const auto sg = math::standardization_grad(0.3, -0.2, 0.7, n, s);
  const auto opts = values.options();
  const at::Tensor x = at::randn({g.batch, g.channels, g.height, g.width}, opts);
  const at::Tensor go = at::randn_like(x), big_g = at::randn({g.batch, n, 2}, opts);
  const chunks::TailGrads tail = chunks::tail_grads(g, s, chunks::Sums{0.4, 0.0, -0.3});
  double worst = 0;
  const auto compare = [&](const at::Tensor& a, const at::Tensor& b) {
    worst = std::fmax(worst, relative_error(a, b));
  };
  const auto compare_sums = [&](double a, double b) {
    worst = std::fmax(worst, std::fabs(a - b) / (std::fabs(b) + 1e-30));
  };
  for (int64_t b = 0; b < g.batch; ++b) {
    chunks::Sums m1, m4, d1, d4;
    chunks::SpectrumEnergy e1, e4;
    at::Tensor x1 = at::zeros({g.batch, n, 2}, opts), x4 = at::zeros_like(x1);
    at::Tensor g1 = at::zeros_like(values), g4 = at::zeros_like(values);
    for (int64_t i = 0; i < n; ++i) {
      chunks::moments_chunk<1, kComplex>(values.data_ptr<T>(), n, b, i, m1);
      chunks::spectrum_chunk<1>(head, g, s, b, i, chunks::SpectrumCursor(i, g), x1.data_ptr<T>(), e1);
      chunks::spectrum_grad_chunk<1>(head, g, s, tail, b, i, chunks::SpectrumCursor(i, g), big_g.data_ptr<T>(),
                                     g1.data_ptr<T>(), d1);
      chunks::head_standardization_grad_chunk<1, kComplex>(values.data_ptr<T>(), g1.data_ptr<T>(), n, b, i, s, sg);
    }
    for (int64_t i = 0; i < n; i += W) {
      chunks::moments_chunk<W, kComplex>(values.data_ptr<T>(), n, b, i, m4);
      chunks::spectrum_chunk<W>(head, g, s, b, i, chunks::SpectrumCursor(i, g), x4.data_ptr<T>(), e4);
      chunks::spectrum_grad_chunk<W>(head, g, s, tail, b, i, chunks::SpectrumCursor(i, g), big_g.data_ptr<T>(),
                                     g4.data_ptr<T>(), d4);
      chunks::head_standardization_grad_chunk<W, kComplex>(values.data_ptr<T>(), g4.data_ptr<T>(), n, b, i, s, sg);
    }
    compare(x4[b], x1[b]);
    compare(g4[b], g1[b]);
    for (const auto& [a, c] : {std::pair{m4, m1}, std::pair{d4, d1}}) {
      compare_sums(a.re, c.re);
      compare_sums(a.im, c.im);
      compare_sums(a.dot, c.dot);
    }
    compare_sums(e4.weighted_sq, e1.weighted_sq);
    compare_sums(e4.dc, e1.dc);

    at::Tensor o1 = at::zeros_like(x), o4 = at::zeros_like(x), gx1 = at::zeros_like(x), gx4 = at::zeros_like(x);
    chunks::Sums s1, s4;
    const T scale = T(1.0 / double(plane)), mean = T(0.2), inv_t = T(0.9), lo = T(-1), span = T(2);
    for (int64_t p = 0; p < plane; ++p) {
      chunks::image_forward_chunk<1, 4>(x.data_ptr<T>(), o1.data_ptr<T>(), kk, channels, plane, b, p, scale, mean,
                                        inv_t, lo, span);
      chunks::image_backward_chunk<1, 4>(go.data_ptr<T>(), x.data_ptr<T>(), gx1.data_ptr<T>(), kk, channels, plane, b,
                                         p, scale, mean, inv_t, span, s1);
    }
    for (int64_t p = 0; p < plane; p += W) {
      chunks::image_forward_chunk<W, 4>(x.data_ptr<T>(), o4.data_ptr<T>(), kk, channels, plane, b, p, scale, mean,
                                        inv_t, lo, span);
      chunks::image_backward_chunk<W, 4>(go.data_ptr<T>(), x.data_ptr<T>(), gx4.data_ptr<T>(), kk, channels, plane,
                                         b, p, scale, mean, inv_t, span, s4);
    }
    compare(o4[b], o1[b]);
    compare(gx4[b], gx1[b]);
    compare_sums(s4.re, s1.re);
    compare_sums(s4.dot, s1.dot);
  }
  return worst;
}

template <typename T>
static void test_wide_chunks(at::ScalarType dtype, double tolerance) {
  at::manual_seed(2);
  double worst = 0;
  // Samples of whole wide chunks, as the CUDA driver requires; chunks that cross rows (Wr = 3, 5)
  // and planes, and both kinds of self-conjugate column.
  for (auto shape : std::vector<std::array<int64_t, 4>>{{2, 3, 4, 4}, {1, 4, 3, 8}, {2, 3, 8, 9}, {1, 2, 6, 6}}) {
    const Geometry g{shape[0], shape[1], shape[2], shape[3], shape[3] / 2 + 1};
    const auto opts = at::TensorOptions().dtype(dtype);
    const at::Tensor k = at::randn({g.channels, g.channels}, opts);
    const at::Tensor phase = at::randn({g.batch, g.channels, g.height, g.half_width}, opts);
    const at::Tensor magnitude = at::rand({g.channels, g.height, g.half_width}, opts) + 0.1;
    const at::Tensor z = at::randn({g.batch, g.channels, g.height, g.half_width, 2}, opts);
    const at::Tensor scale = at::rand({g.height, g.half_width}, opts) + 0.1;
    const chunks::MacoHead<T> maco{phase.data_ptr<T>(), magnitude.data_ptr<T>(), 0, g.spectrum_numel()};
    const chunks::FourierHead<T> fourier{z.data_ptr<T>(), scale.data_ptr<T>(), g.spectrum_numel()};
    worst = std::fmax(worst, wide_against_narrow<chunks::MacoHead<T>, T>(maco, phase, g, k));
    worst = std::fmax(worst, wide_against_narrow<chunks::FourierHead<T>, T>(fourier, z, g, k));
  }
  std::printf("wide chunks vs one-element chunks (%s): max rel err %.2e\n", c10::toString(dtype), worst);
  EXPECT(worst < tolerance);
}

int main() {
  test_fast_exp_and_sincos();
  test_layout();
  test_standardization_grad();
  test_spectrum_cursor();
  test_ops_against_reference(at::kDouble, 1e-9);
  test_ops_against_reference(at::kFloat, 2e-4);
  test_non_finite_inputs();
  test_wide_chunks<double>(at::kDouble, 1e-12);
  test_wide_chunks<float>(at::kFloat, 1e-5);
  std::printf("%s\n", failures ? "FAILED" : "all C++ tests passed");
  return failures ? 1 : 0;
}
