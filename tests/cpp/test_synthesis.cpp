// C++ tests: the shared formulas of csrc/synthesis_math.h (which the CUDA kernels run too), the
// CUDA kernels' per-thread work of csrc/synthesis_chunks.h run on the CPU against the CPU op, and
// the registered ops against a libtorch transcription of the reference.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "synthesis_chunks.h"
#include "synthesis_math.h"

namespace math = phasevis::math;
namespace chunks = phasevis::chunks;
using phasevis::Geometry;

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


static void test_spectrum_cursor() {
  int bad = 0;
  for (uint32_t wr : {1u, 2u, 5u, 113u}) {
    for (uint32_t h : {1u, 3u, 8u}) {
      const uint32_t n = 3 * h * wr;
      for (uint32_t start = 0; start < n; start += 3) {
        chunks::SpectrumCursor at(start, wr, h);
        for (uint32_t i = start; i < std::min(n, start + 9); ++i, at.advance())
          bad += at.k != i % wr || at.h != (i / wr) % h || at.hk() != (i / wr) % h * wr + i % wr;
      }
    }
  }
  EXPECT(bad == 0);
}

// What the CUDA forward and backward compute, with the kernels' grid-stride loops replaced by
// plain loops over the chunks and the FFTs by ATen's CPU ones. VS, VI: the chunk widths of the
// spectrum-side and image-side kernels, as the CUDA driver picks them.
struct Emulated {
  at::Tensor out, x, head_stats, image_stats, grad;
};

template <int VS, int VI, typename T, typename Head>
static Emulated emulate_cuda(const Head& head, const at::Tensor& values, const Geometry& g, const at::Tensor& k,
                             double lo, double hi, double eps, const at::Tensor& grad_out) {
  constexpr bool kComplex = Head::kComplex;
  const int cols = kComplex ? 3 : 2;
  const int64_t n = g.spectrum_numel(), plane = g.height * g.width;
  const int channels = int(g.channels);
  T kk[4][4] = {};
  for (int c = 0; c < std::min(channels, 4); ++c)
    for (int d = 0; d < std::min(channels, 4); ++d) kk[c][d] = k[c][d].item<T>();
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  Emulated e;
  e.head_stats = at::empty({g.batch, cols}, f64);
  e.image_stats = at::empty({g.batch, 2}, f64);
  at::Tensor spectrum = at::empty({g.batch, g.channels, g.height, g.half_width},
                                  values.options().dtype(c10::toComplexType(values.scalar_type())));
  std::vector<std::array<double, 2>> energy(g.batch, {0.0, 0.0});
  for (int64_t b = 0; b < g.batch; ++b) {
    double moments[3] = {0, 0, 0};
    for (int64_t i = 0; i < n; i += VS) chunks::moments_chunk<VS, kComplex>(values.data_ptr<T>(), n, b, i, moments);
    const auto s = chunks::head_standardization(moments, n, eps);
    double* row = e.head_stats.data_ptr<double>() + b * cols;
    row[0] = s.mean_re;
    if (kComplex) row[1] = s.mean_im;
    row[cols - 1] = s.std;
    for (int64_t i = 0; i < n; i += VS)
      chunks::spectrum_chunk<VS>(head, g, s, b, i, reinterpret_cast<T*>(spectrum.data_ptr()), energy[b].data());
  }
  e.x = at::_fft_c2r(spectrum, at::IntArrayRef{2, 3}, 0, g.width).contiguous();
  e.out = at::empty_like(e.x);
  for (int64_t b = 0; b < g.batch; ++b) {
    const auto s = chunks::image_standardization(energy[b].data(), g, eps);
    e.image_stats[b][0] = s.mean_re;
    e.image_stats[b][1] = s.std;
    const T input_scale = T(1.0 / double(plane));
    for (int64_t p = 0; p < plane; p += VI) {
      if (channels <= 4)
        chunks::image_forward_chunk<VI, 4>(e.x.data_ptr<T>(), e.out.data_ptr<T>(), kk, channels, plane, b, p,
                                           input_scale, T(s.mean_re), T(s.inv_t), T(lo), T(hi - lo));
      else
        for (int64_t q = p; q < p + VI; ++q)
          chunks::image_forward_pixel_any_channels(e.x.data_ptr<T>(), e.out.data_ptr<T>(), k.data_ptr<T>(), channels,
                                                   plane, b, q, input_scale, T(s.mean_re), T(s.inv_t), T(lo),
                                                   T(hi - lo));
    }
  }

  at::Tensor grad_x = at::empty_like(e.x);
  std::vector<std::array<double, 2>> image_grad_totals(g.batch, {0.0, 0.0});
  for (int64_t b = 0; b < g.batch; ++b) {
    const auto s = chunks::stored_standardization(e.image_stats.data_ptr<double>() + b * 2, false, eps);
    const T input_scale = T(1.0 / double(plane));
    for (int64_t p = 0; p < plane; p += VI) {
      if (channels <= 4)
        chunks::image_backward_chunk<VI, 4>(grad_out.data_ptr<T>(), e.x.data_ptr<T>(), grad_x.data_ptr<T>(), kk,
                                            channels, plane, b, p, input_scale, T(s.mean_re), T(s.inv_t), T(hi - lo),
                                            image_grad_totals[b].data());
      else
        for (int64_t q = p; q < p + VI; ++q)
          chunks::image_backward_pixel_any_channels(grad_out.data_ptr<T>(), e.x.data_ptr<T>(), grad_x.data_ptr<T>(),
                                                    k.data_ptr<T>(), channels, plane, b, q, input_scale,
                                                    T(s.mean_re), T(s.inv_t), T(hi - lo),
                                                    image_grad_totals[b].data());
    }
  }
  const at::Tensor big_g = at::_fft_r2c(grad_x, at::IntArrayRef{2, 3}, 0, true).contiguous();
  e.grad = at::empty_like(values);
  for (int64_t b = 0; b < g.batch; ++b) {
    const auto s = chunks::stored_standardization(e.head_stats.data_ptr<double>() + b * cols, kComplex, eps);
    const auto image = chunks::stored_standardization(e.image_stats.data_ptr<double>() + b * 2, false, eps);
    const auto tail = chunks::tail_grads(g, image, image_grad_totals[b].data());
    double sums[3] = {0, 0, 0};
    for (int64_t i = 0; i < n; i += VS)
      chunks::spectrum_grad_chunk<VS>(head, g, s, tail, b, i, reinterpret_cast<const T*>(big_g.const_data_ptr()),
                                      e.grad.data_ptr<T>(), sums);
    const auto sg = math::standardization_grad(sums[0], sums[1], sums[2], n, s);
    for (int64_t i = 0; i < n; i += VS)
      chunks::head_standardization_grad_chunk<VS, kComplex>(values.data_ptr<T>(), e.grad.data_ptr<T>(), n, b, i, s, sg);
  }
  return e;
}

template <typename T, typename Head>
static Emulated emulate_cuda_as_driver(const Head& head, const at::Tensor& values, const Geometry& g,
                                       const at::Tensor& k, double lo, double hi, double eps, const at::Tensor& go,
                                       bool wide) {
  const bool s4 = wide && g.spectrum_numel() % chunks::kWide == 0, i4 = wide && g.height * g.width % chunks::kWide == 0;
  if (s4 && i4) return emulate_cuda<chunks::kWide, chunks::kWide, T>(head, values, g, k, lo, hi, eps, go);
  if (s4) return emulate_cuda<chunks::kWide, 1, T>(head, values, g, k, lo, hi, eps, go);
  if (i4) return emulate_cuda<1, chunks::kWide, T>(head, values, g, k, lo, hi, eps, go);
  return emulate_cuda<1, 1, T>(head, values, g, k, lo, hi, eps, go);
}

static double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got - want).abs().max() / (want.abs().max() + 1e-30)).item<double>();
}

template <typename T>
static void test_cuda_chunks_against_cpu_op(at::ScalarType dtype, double tolerance) {
  using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto forward_op = [&](const char* name) {
    return dispatcher.findSchemaOrThrow(name, "").typed<Outputs(const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                                                double, double, const at::Tensor&, double)>();
  };
  const auto backward_op = [&](const char* name) {
    return dispatcher.findSchemaOrThrow(name, "").typed<at::Tensor(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&, const at::Tensor&, double, double, double)>();
  };
  const auto maco = forward_op("phasevis::maco_synthesis"), maco_bwd = backward_op("phasevis::maco_synthesis_backward");
  const auto fourier = forward_op("phasevis::fourier_synthesis");
  const auto fourier_bwd = backward_op("phasevis::fourier_synthesis_backward");
  const double lo = -0.5, hi = 1.5, eps = 1e-4;
  at::manual_seed(1);
  double worst = 0;
  // (B, C, H, W): wide and narrow chunks on either side, odd sizes, W = 1, C = 1 to 6 (above 4:
  // the any-channel pixel functions), chunks that cross a channel plane (1, 4, 3, 4).
  for (auto shape : std::vector<std::array<int64_t, 4>>{
           {2, 3, 8, 10}, {1, 3, 9, 13}, {2, 3, 6, 7}, {1, 3, 5, 8}, {2, 1, 8, 1}, {1, 4, 8, 8}, {2, 2, 4, 6},
           {1, 4, 3, 4}, {1, 5, 6, 8}, {2, 6, 5, 7}}) {
    const Geometry g{shape[0], shape[1], shape[2], shape[3], shape[3] / 2 + 1};
    const at::Tensor k = at::randn({g.channels, g.channels}, dtype) * 0.5 + at::eye(g.channels, dtype);
    const at::Tensor go = at::randn({g.batch, g.channels, g.height, g.width}, dtype);
    const at::Tensor phase = at::randn({g.batch, g.channels, g.height, g.half_width}, dtype);
    const at::Tensor magnitude = at::rand({g.channels, g.height, g.half_width}, dtype) + 0.1;
    const at::Tensor z = at::randn({g.batch, g.channels, g.height, g.half_width, 2}, dtype);
    const at::Tensor scale = at::rand({g.height, g.half_width}, dtype) + 0.1;
    const Outputs maco_want = maco.call(phase, magnitude, g.height, g.width, lo, hi, k, eps);
    const Outputs fourier_want = fourier.call(z, scale, g.height, g.width, lo, hi, k, eps);
    const at::Tensor maco_grad_want = maco_bwd.call(go, phase, magnitude, std::get<1>(maco_want),
                                                    std::get<2>(maco_want), std::get<3>(maco_want), k, lo, hi, eps);
    const at::Tensor fourier_grad_want =
        fourier_bwd.call(go, z, scale, std::get<1>(fourier_want), std::get<2>(fourier_want),
                         std::get<3>(fourier_want), k, lo, hi, eps);
    const auto compare = [&](const Emulated& e, const Outputs& want, const at::Tensor& grad_want) {
      for (double err : {relative_error(e.out, std::get<0>(want)), relative_error(e.x, std::get<1>(want)),
                         relative_error(e.head_stats, std::get<2>(want)),
                         relative_error(e.image_stats, std::get<3>(want)), relative_error(e.grad, grad_want)}) {
        worst = std::fmax(worst, err);
        EXPECT(err < tolerance);
      }
    };
    for (bool wide : {false, true}) {
      const chunks::MacoHead<T> maco_head{phase.data_ptr<T>(), magnitude.data_ptr<T>(), 0, g.spectrum_numel()};
      compare(emulate_cuda_as_driver<T>(maco_head, phase, g, k, lo, hi, eps, go, wide), maco_want, maco_grad_want);
      const chunks::FourierHead<T> fourier_head{z.data_ptr<T>(), scale.data_ptr<T>(), g.spectrum_numel()};
      compare(emulate_cuda_as_driver<T>(fourier_head, z, g, k, lo, hi, eps, go, wide), fourier_want,
              fourier_grad_want);
    }
  }
  std::printf("CUDA chunks on the CPU vs the CPU op (%s): max rel err %.2e\n", c10::toString(dtype), worst);
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
  test_spectrum_cursor();
  test_cuda_chunks_against_cpu_op<double>(at::kDouble, 1e-9);
  test_cuda_chunks_against_cpu_op<float>(at::kFloat, 2e-4);
  test_op_against_reference();
  std::printf("%s\n", failures ? "FAILED" : "all C++ tests passed");
  return failures ? 1 : 0;
}
