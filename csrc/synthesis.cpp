// CPU kernels of the fused phase-to-image synthesis.
//
// Memory passes per call (B·C·H·Wr "spectrum" elements, B·C·H·W "image" elements):
//   forward:  spectrum: 1 read (moments) + 1 read/1 write (X, with the image moments by Parseval)
//             unnormalized irfft2 (plane by plane from 512²: no copies), then image: 1 read + 1 write (out; x̂ is formed on the fly)
//   backward: image: 2 reads + 1 write (∂L/∂x̂ and its sums), rfft2, then spectrum: 2 reads + 1 write
//             (∂L/∂v̂ with the image standardization folded in) + 1 read/1 write (head standardization)
// Everything after the moments runs group by group of samples (samples_per_group below), so that
// the temporaries between a transform and the passes beside it are a group's, not the batch's.
// Below 512² with several groups, each group's inverse transform is copied into its slice of x:
// one more image-sized read and write.
// Backward keeps x, the unnormalized inverse transform (one image-sized tensor), rather than x̂:
// x̂ = (x/(H·W) - mean)·inv_t is two flops away, and not storing it saves an image-sized write.
// It also keeps the per-sample statistics and the inputs.
//
// The per-element work is the chunk functions of csrc/synthesis_chunks.h, which the CUDA kernels
// run too. Here they run as one-element chunks inside `omp simd` loops over a row, one row per
// at::parallel_for task; each row leaves its partial sums in a slot of its own, and the slots are
// added per sample in a fixed order, so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "synthesis_chunks.h"
#include "synthesis_math.h"
#include "synthesis_ops.h"

namespace phasevis {
namespace {

using math::Standardization;

// Rows of at least this many elements per task keep at::parallel_for's overhead negligible.
int64_t grain_for(int64_t row_length) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_length)); }

// Per-sample totals of per-row partials (rows_per_sample each), added in a fixed order.
template <typename S>
std::vector<S> sum_rows_per_sample(const std::vector<S>& per_row, int64_t batch, int64_t rows_per_sample) {
  std::vector<S> totals(batch);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows_per_sample; ++r) totals[b] += per_row[b * rows_per_sample + r];
  return totals;
}

// Runs fn(b, r, slot) for every row r of every sample b (rows_per_sample each), in parallel;
// slot = b·rows_per_sample + r indexes the row's partial sums.
template <typename Fn>
void for_each_row(int64_t batch, int64_t rows_per_sample, int64_t row_length, const Fn& fn) {
  at::parallel_for(0, batch * rows_per_sample, grain_for(row_length), [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) fn(slot / rows_per_sample, slot % rows_per_sample, slot);
  });
}

// Finite inputs give finite first-pass sums (a float64 square can overflow, but only past 1e154),
// so a non-finite sum is where a NaN or an infinity would show; only then are the values read
// again, to name the argument, and a mere overflow goes on to an ordinary result.
template <typename S>
void check_finite_sums(const std::vector<S>& sums, const at::Tensor& values, const char* name) {
  for (const S& s : sums) {
    if (!s.finite()) {
      TORCH_CHECK_VALUE(at::isfinite(values).all().item<bool>(), name, " contains NaN or infinite values");
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Row loops: one-element chunks, vectorized across the row; compiled per ISA. The sums live in
// scalars of the loop (named fields, which GCC keeps in vector registers) and reduce per row.
// ---------------------------------------------------------------------------

// The moments of values [i0, i1) of sample b.
template <typename T, bool kComplex>
PV_CPU_CLONES chunks::Sums moments_row(const T* __restrict v, int64_t n, int64_t b, int64_t i0, int64_t i1) {
  double re = 0.0, im = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : re, im, dot)
  for (int64_t i = i0; i < i1; ++i) {
    chunks::Sums acc;
    chunks::moments_chunk<1, kComplex>(v, n, b, i, acc);
    re += acc.re;
    im += acc.im;
    dot += acc.dot;
  }
  return {re, im, dot};
}

// The interior of a spectrum row, columns [1, end), runs in blocks of kBlock bins, so that the
// vectorizer makes whole vectors of them. One loop over the interior leaves W/2 - 1 mod 16 = 15
// bins at every power-of-two width, and GCC runs that remainder one bin at a time: in blocks, the
// two spectrum passes take a quarter less time at 224² (perf record on the Xeon of
// docs/benchmarks.md, "Synthesis op"). The last block is moved back to end at
// `end` instead: it writes the bins it shares with the block before again (the same values), and
// adds to the sums only those at or past `fresh`. 16 floats are one AVX-512 vector, two AVX2 ones.
// A row interior shorter than a block is one block of its own length.
constexpr int64_t kBlock = 16;

struct Block {
  int64_t first, length;
};

// The block holding bins [fresh, fresh + kBlock) of an interior [1, end), fresh < end.
inline Block interior_block(int64_t fresh, int64_t end) {
  return {std::max<int64_t>(1, std::min(fresh, end - kBlock)), std::min(kBlock, end - 1)};
}

// Per-lane partial sums of a row's blocks: lane j holds bin j of every block, and the lanes are
// added once, at the row's end. An `omp simd reduction` per block would reduce its vectors to a
// scalar every 16 bins, a chain of dependent scalar adds per block.
struct LaneSums {
  double v[kBlock] = {};
  double total() const {
    double t = 0.0;
    for (int64_t j = 0; j < kBlock; ++j) t += v[j];
    return t;
  }
};

// X for row `row` = c·H + h of sample b, and the row's share of the image moments by Parseval.
template <typename T, typename Head>
PV_CPU_CLONES chunks::SpectrumEnergy spectrum_row(const Head head, const Geometry g, const Standardization s,
                                                  int64_t b, int64_t row, T* __restrict x) {
  const uint32_t h = uint32_t(row % g.height), wr = uint32_t(g.half_width), height = uint32_t(g.height);
  const int64_t start = row * g.half_width, end = math::interior_end(g.width);
  LaneSums weighted_sq;  // interior bins have no DC share
  for (int64_t fresh = 1; fresh < end; fresh += kBlock) {
    const Block block = interior_block(fresh, end);
#pragma omp simd
    for (int64_t j = 0; j < block.length; ++j) {
      const int64_t k = block.first + j;
      chunks::SpectrumEnergy acc;
      chunks::spectrum_chunk<1>(head, g, s, b, start + k, chunks::InteriorBin{uint32_t(k), h, wr, height}, x, acc);
      weighted_sq.v[j] += k >= fresh ? acc.weighted_sq : 0.0;
    }
  }
  chunks::SpectrumEnergy acc{weighted_sq.total(), 0.0};
  for (int c = 0; c < math::self_conjugate_column_count(g.width); ++c) {
    const uint32_t k = uint32_t(math::self_conjugate_column(c, g.width));
    chunks::spectrum_chunk<1>(head, g, s, b, start + k, chunks::SpectrumCursor(k, h, g), x, acc);
  }
  return acc;
}

// ∂L/∂v̂ for row `row` of sample b from G = rfft2(∂L/∂x̂), and the row's share of the head gradient's
// sums; the interior in blocks, as in spectrum_row.
template <typename T, typename Head>
PV_CPU_CLONES chunks::Sums spectrum_grad_row(const Head head, const Geometry g, const Standardization s,
                                             const chunks::TailGrads tail, int64_t b, int64_t row,
                                             const T* __restrict big_g, T* __restrict grad) {
  const uint32_t h = uint32_t(row % g.height), wr = uint32_t(g.half_width), height = uint32_t(g.height);
  const int64_t start = row * g.half_width, end = math::interior_end(g.width);
  LaneSums re, im, dot;
  for (int64_t fresh = 1; fresh < end; fresh += kBlock) {
    const Block block = interior_block(fresh, end);
#pragma omp simd
    for (int64_t j = 0; j < block.length; ++j) {
      const int64_t k = block.first + j;
      chunks::Sums acc;
      chunks::spectrum_grad_chunk<1>(head, g, s, tail, b, start + k, chunks::InteriorBin{uint32_t(k), h, wr, height},
                                     big_g, grad, acc);
      // A factor, not three selects: GCC if-converts one select here, not three, and with them
      // leaves the loop unvectorized.
      const double fresh_bin = k >= fresh ? 1.0 : 0.0;
      re.v[j] += fresh_bin * acc.re;
      im.v[j] += fresh_bin * acc.im;
      dot.v[j] += fresh_bin * acc.dot;
    }
  }
  chunks::Sums acc{re.total(), im.total(), dot.total()};
  for (int c = 0; c < math::self_conjugate_column_count(g.width); ++c) {
    const uint32_t k = uint32_t(math::self_conjugate_column(c, g.width));
    chunks::spectrum_grad_chunk<1>(head, g, s, tail, b, start + k, chunks::SpectrumCursor(k, h, g), big_g, grad, acc);
  }
  return acc;
}

// g_v = scale·g + shift + along·v̂ in place on values [i0, i1) of sample b.
template <typename T, bool kComplex>
PV_CPU_CLONES void head_standardization_grad_row(const T* __restrict v, T* __restrict grad, int64_t n, int64_t b,
                                                 int64_t i0, int64_t i1, const Standardization s,
                                                 const math::StandardizationGrad sg) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) chunks::head_standardization_grad_chunk<1, kComplex>(v, grad, n, b, i, s, sg);
}

// The color matrix as the image chunks take it: in registers, kC x kC.
template <typename T, int kC>
struct ColorMatrix {
  T k[kC][kC];
  explicit ColorMatrix(const T* values) {
    for (int c = 0; c < kC; ++c)
      for (int d = 0; d < kC; ++d) k[c][d] = values[c * kC + d];
  }
};

// out for image row h of sample b, every channel. kC > 0: C = kC, the pixel's channels held in
// registers (the channel count is a constant there, so the chunk's channel tests fold away);
// kC = 0: any C, through memory.
template <typename T, int kC>
PV_CPU_CLONES void image_forward_row(const T* __restrict x, T* __restrict out, const T* __restrict k,
                                     const Geometry g, int64_t b, int64_t h, T input_scale, T mean, T inv_t, T lo,
                                     T span) {
  const int64_t plane = g.height * g.width, p0 = h * g.width;
  if constexpr (kC > 0) {
    const ColorMatrix<T, kC> kk(k);
#pragma omp simd
    for (int64_t p = p0; p < p0 + g.width; ++p)
      chunks::image_forward_chunk<1, kC>(x, out, kk.k, kC, plane, b, p, input_scale, mean, inv_t, lo, span);
  } else {
    for (int64_t p = p0; p < p0 + g.width; ++p)
      chunks::image_forward_pixel_any_channels(x, out, k, int(g.channels), plane, b, p, input_scale, mean, inv_t, lo,
                                               span);
  }
}

// ∂L/∂x̂ for image row h of sample b, every channel, and the row's share of the image gradient's sums.
template <typename T, int kC>
PV_CPU_CLONES chunks::Sums image_backward_row(const T* __restrict grad_out, const T* __restrict x,
                                              T* __restrict grad_x, const T* __restrict k, const Geometry g,
                                              int64_t b, int64_t h, T input_scale, T mean, T inv_t, T span) {
  const int64_t plane = g.height * g.width, p0 = h * g.width;
  if constexpr (kC > 0) {
    const ColorMatrix<T, kC> kk(k);
    double re = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : re, dot)
    for (int64_t p = p0; p < p0 + g.width; ++p) {
      chunks::Sums acc;
      chunks::image_backward_chunk<1, kC>(grad_out, x, grad_x, kk.k, kC, plane, b, p, input_scale, mean, inv_t, span,
                                          acc);
      re += acc.re;
      dot += acc.dot;
    }
    return {re, 0.0, dot};
  } else {
    chunks::Sums acc;
    for (int64_t p = p0; p < p0 + g.width; ++p)
      chunks::image_backward_pixel_any_channels(grad_out, x, grad_x, k, int(g.channels), plane, b, p, input_scale,
                                                mean, inv_t, span, acc);
    return acc;
  }
}

// Calls fn(std::integral_constant<int, kC>) with kC = C for the channel counts kept in registers
// (as the CUDA kernels do up to 4), else kC = 0.
template <typename F>
void with_channels(int64_t channels, F&& fn) {
  switch (channels) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    case 4: return fn(std::integral_constant<int, 4>{});
    default: return fn(std::integral_constant<int, 0>{});
  }
}

// irfft2 without its scale, into x. Planes from kPlaneByPlane elements on are transformed one at a
// time: at::fft_irfft2 on a whole (B, C, H, Wr) batch transforms the columns first, and its
// batching copies the spectrum twice on the way, each copy a transpose of a spectrum-sized tensor;
// at 1024² and batch 8 they more than double the transform's time. One plane's column transform is
// a single strided batch, which MKL reads as it lies, and its output's layout is the one the row
// transform reads in place. Below that size the two calls per plane cost more than the copies
// (224²: 2.3 ms against 1.3 ms for batch 8; the two are level at 512²; Xeon, docs/benchmarks.md,
// "Synthesis op"). Plane by plane, the result is bit-for-bit irfft2's. An undefined x is
// allocated (for a whole batch: the batched transform's own output, with no copy).
constexpr int64_t kPlaneByPlane = 512 * 512;

at::Tensor inverse_rfft2_unscaled(const at::Tensor& spectrum, const Geometry& g, at::Tensor x) {
  // Norm "forward" leaves the inverse unscaled; the image pass applies the 1/(H·W) while reading.
  if (g.height * g.width < kPlaneByPlane) {
    const at::Tensor batched = at::fft_irfft2(spectrum, c10::IntArrayRef{g.height, g.width}, {-2, -1}, "forward");
    if (!x.defined()) return batched.contiguous();
    x.copy_(batched);
    return x;
  }
  if (!x.defined())
    x = at::empty({g.batch, g.channels, g.height, g.width},
                  spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type())));
  const at::Tensor planes = spectrum.view({g.batch * g.channels, g.height, g.half_width});
  at::Tensor out = x.view({g.batch * g.channels, g.height, g.width});
  for (int64_t p = 0; p < planes.size(0); ++p) {
    const at::Tensor columns = at::fft_ifft(planes[p], std::nullopt, 0, "forward");
    at::Tensor row_out = out[p];
    at::fft_irfft_out(row_out, columns, g.width, 1, "forward");
  }
  return x;
}

// The op runs a batch in groups of samples whose images take at most kGroupBytes together, so that
// a group's spectrum, and in the backward its image gradient and that gradient's transform, are
// temporaries small enough for the passes beside each transform to read them from cache, and
// below glibc's mmap threshold (32 MiB once phasevis_ext.allocator has tuned it): whole-batch
// temporaries of 100 MB at 1024² and batch 8 were mapped and faulted in afresh on every call
// (docs/benchmarks.md, "Synthesis op"). At 224² and batch 8 (4.6 MiB) the batch is one group.
// A group holds at least one sample; a batch's groups are of equal size but the last.
constexpr int64_t kGroupBytes = int64_t(8) << 20;

int64_t samples_per_group(const Geometry& g, int64_t element_size) {
  const int64_t sample_bytes = g.image_numel() * element_size;
  const int64_t most = std::max<int64_t>(1, kGroupBytes / sample_bytes);
  const int64_t groups = (g.batch + most - 1) / most;
  return (g.batch + groups - 1) / groups;
}

// Runs fn(b0, group) for each group of samples of g, in order: `group` is g for the samples b0,
// b0 + 1, ..., numbered from 0.
template <typename Fn>
void for_each_group(const Geometry& g, int64_t element_size, const Fn& fn) {
  const int64_t size = samples_per_group(g, element_size);
  for (int64_t b0 = 0; b0 < g.batch; b0 += size) {
    Geometry group = g;
    group.batch = std::min(size, g.batch - b0);
    fn(b0, group);
  }
}

at::Tensor stats_tensor(const std::vector<Standardization>& s, bool complex) {
  const int64_t cols = complex ? 3 : 2;
  at::Tensor t = at::empty({int64_t(s.size()), cols}, at::TensorOptions().dtype(at::kDouble));
  for (size_t b = 0; b < s.size(); ++b) chunks::store_standardization(s[b], complex, t.data_ptr<double>() + b * cols);
  return t;
}

std::vector<Standardization> stats_from_tensor(const at::Tensor& t, bool complex, double eps) {
  const at::Tensor c = t.contiguous();
  std::vector<Standardization> out(c.size(0));
  for (int64_t b = 0; b < c.size(0); ++b)
    out[b] = chunks::stored_standardization(c.const_data_ptr<double>() + b * c.size(1), complex, eps);
  return out;
}

// ---------------------------------------------------------------------------
// Drivers, for either head; the entry points are csrc/synthesis_ops.h's
// ---------------------------------------------------------------------------

struct CpuDrivers {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;
  using Guard = NoGuard;

  template <typename T, typename Head>
  static SynthesisOutputs forward(const Head& head, const at::Tensor& values, const at::Tensor& fixed,
                                  const HeadNames& names, const Geometry& g, const at::Tensor& color_matrix, double lo,
                                  double hi, double eps) {
    constexpr bool kComplex = Head::kComplex;
    const int64_t n = g.spectrum_numel(), rows = g.channels * g.height, wr = g.half_width;

    std::vector<chunks::Sums> moments(g.batch * rows);
    const T* v = values.const_data_ptr<T>();
    for_each_row(g.batch, rows, (kComplex ? 2 : 1) * wr, [&](int64_t b, int64_t r, int64_t slot) {
      moments[slot] = moments_row<T, kComplex>(v, n, b, r * wr, (r + 1) * wr);
    });
    moments = sum_rows_per_sample(moments, g.batch, rows);
    check_finite_sums(moments, values, names.head);
    std::vector<Standardization> head_stats(g.batch), image_stats(g.batch);
    for (int64_t b = 0; b < g.batch; ++b) head_stats[b] = chunks::head_standardization(moments[b], n, eps);

    constexpr c10::ScalarType real_type = c10::CppTypeToScalarType<T>::value;
    const at::TensorOptions real = values.options().dtype(real_type);
    // With several groups, each writes its slice of x; one group's transform output is x itself.
    at::Tensor x = samples_per_group(g, sizeof(T)) < g.batch
                       ? at::empty({g.batch, g.channels, g.height, g.width}, real)
                       : at::Tensor();
    at::Tensor out = at::empty({g.batch, g.channels, g.height, g.width}, real);
    const T* k = color_matrix.const_data_ptr<T>();
    const T input_scale = T(1.0 / double(g.height * g.width)), tlo = T(lo), span = T(hi - lo);
    for_each_group(g, sizeof(T), [&](int64_t b0, const Geometry& gg) {
      const Head hh = head.from_sample(b0);
      at::Tensor spectrum = at::empty({gg.batch, g.channels, g.height, wr}, real.dtype(c10::toComplexType(real_type)));
      T* xs = reinterpret_cast<T*>(spectrum.data_ptr());
      std::vector<chunks::SpectrumEnergy> energy(gg.batch * rows);
      for_each_row(gg.batch, rows, 2 * wr, [&](int64_t b, int64_t r, int64_t slot) {
        energy[slot] = spectrum_row<T>(hh, gg, head_stats[b0 + b], b, r, xs);
      });
      energy = sum_rows_per_sample(energy, gg.batch, rows);
      check_finite_sums(energy, fixed, names.fixed);
      for (int64_t b = 0; b < gg.batch; ++b) image_stats[b0 + b] = chunks::image_standardization(energy[b], g, eps);

      const at::Tensor xg = inverse_rfft2_unscaled(spectrum, gg, x.defined() ? x.narrow(0, b0, gg.batch) : x);
      if (!x.defined()) x = xg;
      const T* xp = xg.const_data_ptr<T>();
      T* op = out.data_ptr<T>() + b0 * g.image_numel();
      with_channels(g.channels, [&](auto channels) {
        constexpr int kC = decltype(channels)::value;
        for_each_row(gg.batch, g.height, g.channels * g.width, [&](int64_t b, int64_t h, int64_t) {
          const Standardization& is = image_stats[b0 + b];
          image_forward_row<T, kC>(xp, op, k, gg, b, h, input_scale, T(is.mean_re), T(is.inv_t), tlo, span);
        });
      });
    });
    return {out, x, stats_tensor(head_stats, kComplex), stats_tensor(image_stats, false)};
  }

  template <typename T, typename Head>
  static at::Tensor backward(const Head& head, const at::Tensor& values, const Geometry& g,
                             const at::Tensor& grad_out, const at::Tensor& x_in, const at::Tensor& head_stats_in,
                             const at::Tensor& image_stats_in, const at::Tensor& color_matrix, double lo, double hi,
                             double eps) {
    constexpr bool kComplex = Head::kComplex;
    const int64_t n = g.spectrum_numel(), rows = g.channels * g.height, wr = g.half_width;
    const int64_t values_per_sample = (kComplex ? 2 : 1) * n;
    const auto image_stats = stats_from_tensor(image_stats_in, false, eps);
    const auto head_stats = stats_from_tensor(head_stats_in, kComplex, eps);

    const at::Tensor go = grad_out.contiguous(), x = x_in.contiguous();
    at::Tensor grad = at::empty_like(values);
    const T* k = color_matrix.const_data_ptr<T>();
    const T input_scale = T(1.0 / double(g.height * g.width)), span = T(hi - lo);
    for_each_group(g, sizeof(T), [&](int64_t b0, const Geometry& gg) {
      const Head hh = head.from_sample(b0);
      const T* gop = go.const_data_ptr<T>() + b0 * g.image_numel();
      const T* xp = x.const_data_ptr<T>() + b0 * g.image_numel();
      at::Tensor grad_x = at::empty({gg.batch, g.channels, g.height, g.width}, x.options());
      T* gxp = grad_x.data_ptr<T>();
      std::vector<chunks::Sums> image_grad(gg.batch * g.height);
      with_channels(g.channels, [&](auto channels) {
        constexpr int kC = decltype(channels)::value;
        for_each_row(gg.batch, g.height, g.channels * g.width, [&](int64_t b, int64_t h, int64_t slot) {
          const Standardization& is = image_stats[b0 + b];
          image_grad[slot] =
              image_backward_row<T, kC>(gop, xp, gxp, k, gg, b, h, input_scale, T(is.mean_re), T(is.inv_t), span);
        });
      });
      image_grad = sum_rows_per_sample(image_grad, gg.batch, g.height);
      std::vector<chunks::TailGrads> tails(gg.batch);
      for (int64_t b = 0; b < gg.batch; ++b) tails[b] = chunks::tail_grads(g, image_stats[b0 + b], image_grad[b]);
      // Unnormalized, as torch.fft.rfft2's default "backward" norm is.
      const at::Tensor big_g = at::fft_rfft2(grad_x, std::nullopt, {-2, -1}, "backward").contiguous();

      const T* gp = reinterpret_cast<const T*>(big_g.const_data_ptr());
      T* out = grad.data_ptr<T>() + b0 * values_per_sample;
      std::vector<chunks::Sums> head_grad(gg.batch * rows);
      for_each_row(gg.batch, rows, 2 * wr, [&](int64_t b, int64_t r, int64_t slot) {
        head_grad[slot] = spectrum_grad_row<T>(hh, gg, head_stats[b0 + b], tails[b], b, r, gp, out);
      });
      head_grad = sum_rows_per_sample(head_grad, gg.batch, rows);
      std::vector<math::StandardizationGrad> head_grads(gg.batch);
      for (int64_t b = 0; b < gg.batch; ++b)
        head_grads[b] =
            math::standardization_grad(head_grad[b].re, head_grad[b].im, head_grad[b].dot, n, head_stats[b0 + b]);
      const T* v = values.const_data_ptr<T>() + b0 * values_per_sample;
      for_each_row(gg.batch, rows, (kComplex ? 2 : 1) * wr, [&](int64_t b, int64_t r, int64_t) {
        head_standardization_grad_row<T, kComplex>(v, out, n, b, r * wr, (r + 1) * wr, head_stats[b0 + b],
                                                   head_grads[b]);
      });
    });
    return grad;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, CPU, m) { register_synthesis_kernels<CpuDrivers>(m); }

}  // namespace phasevis
