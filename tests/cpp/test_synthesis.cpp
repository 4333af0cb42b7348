// C++ tests: the shared formulas of csrc/synthesis_math.h (which the CUDA kernels run too),
// and the registered ops against a libtorch transcription of the reference.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "synthesis_math.h"

namespace math = phasevis::math;

static int failures = 0;
#define EXPECT(cond, ...)                                    \
  do {                                                       \
    if (!(cond)) {                                           \
      ++failures;                                            \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                        \
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

static at::Tensor reference_maco(const at::Tensor& phase, const at::Tensor& mag, int64_t h, int64_t w,
                                 const at::Tensor& k, double lo, double hi, double eps) {
  auto standardize = [&](const at::Tensor& t) {
    const auto dims = std::vector<int64_t>{1, 2, 3};
    return (t - t.mean(dims, true)) / (t.std(dims, /*unbiased=*/true, true) + eps);
  };
  const at::Tensor ph = standardize(phase);
  const at::Tensor spectrum = at::complex(mag * at::cos(ph), mag * at::sin(ph));
  const at::Tensor x = standardize(at::fft_irfft2(spectrum, at::IntArrayRef{h, w}, {-2, -1}, "backward"));
  const at::Tensor y = at::einsum("bchw,cd->bdhw", {x, k});
  return lo + (hi - lo) * at::sigmoid(y);
}

static void test_op_against_reference() {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("phasevis::maco_synthesis", "").typed<
      std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                                  int64_t, double, double, const at::Tensor&, double)>();
  at::manual_seed(0);
  const at::Tensor k = at::tensor({0.56282854, 0.58447580, 0.58447580, 0.19482528, 0.0, -0.19482528, 0.04329450,
                                   -0.10823626, 0.06494176}, at::kDouble).view({3, 3});
  for (auto shape : std::vector<std::array<int64_t, 3>>{{2, 16, 16}, {1, 9, 13}, {3, 32, 7}}) {
    const int64_t b = shape[0], h = shape[1], w = shape[2];
    const at::Tensor phase = at::randn({b, 3, h, w / 2 + 1}, at::kDouble);
    const at::Tensor mag = at::rand({3, h, w / 2 + 1}, at::kDouble) + 0.1;
    const at::Tensor got = std::get<0>(op.call(phase, mag, h, w, -1.0, 2.0, k, 1e-4));
    const at::Tensor want = reference_maco(phase, mag, h, w, k, -1.0, 2.0, 1e-4);
    const double err = (got - want).abs().max().item<double>();
    std::printf("op vs reference (%lld, 3, %lld, %lld): %.2e\n", (long long)b, (long long)h, (long long)w, err);
    EXPECT(err < 1e-10);
  }
}

int main() {
  test_fast_exp_and_sincos();
  test_layout();
  test_standardization_grad();
  test_op_against_reference();
  std::printf("%s\n", failures ? "FAILED" : "all C++ tests passed");
  return failures ? 1 : 0;
}
