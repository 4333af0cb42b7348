// Argument checks shared by the CPU and CUDA kernels. Python validates first and names
// the argument; these keep the native code from ever reading out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

#include "synthesis_math.h"

namespace phasevis {

inline void check_float(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ", t.scalar_type());
}

// `magnitude`-like tensors are (C, H, Wr) or (B, C, H, Wr); returns a contiguous (C, H, Wr)
// or (B, C, H, Wr) tensor and the batch stride in elements (0 when shared across the batch).
inline std::pair<at::Tensor, int64_t> per_sample_or_shared(const at::Tensor& t, const Geometry& g,
                                                           const char* name) {
  if (t.dim() == 3 || (t.dim() == 4 && t.size(0) == g.batch && t.stride(0) == 0)) {
    at::Tensor shared = (t.dim() == 4 ? t.select(0, 0) : t).contiguous();
    TORCH_CHECK(shared.sizes() == at::IntArrayRef({g.channels, g.height, g.half_width}), name,
                " must have shape (C, H, Wr) = (", g.channels, ", ", g.height, ", ", g.half_width, "), got ",
                shared.sizes());
    return {shared, 0};
  }
  TORCH_CHECK(t.dim() == 4 && t.sizes() == at::IntArrayRef({g.batch, g.channels, g.height, g.half_width}), name,
              " must have shape (C, H, Wr) or (B, C, H, Wr) matching the phase, got ", t.sizes());
  return {t.contiguous(), g.spectrum_numel()};
}

// Geometry of a head input of shape (B, C, H, Wr[, 2]) for an image of `height` x `width`.
inline Geometry head_geometry(const at::Tensor& head, int64_t height, int64_t width, bool complex_pairs) {
  const int64_t rank = complex_pairs ? 5 : 4;
  TORCH_CHECK(head.dim() == rank, "the synthesis input must have ", rank, " dimensions, got ", head.dim());
  TORCH_CHECK(head.scalar_type() == at::kFloat || head.scalar_type() == at::kDouble,
              "the synthesis input must be float32 or float64, got ", head.scalar_type());
  if (complex_pairs) TORCH_CHECK(head.size(4) == 2, "the spectrum's last dimension must hold (re, im)");
  Geometry g{head.size(0), head.size(1), head.size(2), width, head.size(3)};
  TORCH_CHECK(g.batch > 0 && g.channels > 0, "the batch and channel sizes must be positive");
  TORCH_CHECK(height == g.height, "height ", height, " does not match the spectrum's ", g.height, " rows");
  TORCH_CHECK(width > 0 && width / 2 + 1 == g.half_width, "width ", width, " does not match ", g.half_width,
              " rfft columns (need width // 2 + 1 == columns)");
  TORCH_CHECK(g.image_numel() > 1 && g.spectrum_numel() > 1, "a sample needs at least two elements for its std");
  // The chunk functions index a sample's bins with 32 bits.
  TORCH_CHECK(g.spectrum_numel() < (int64_t(1) << 31), "a sample of ", g.spectrum_numel(),
              " spectrum elements is too large for the synthesis kernels (limit 2^31)");
  return g;
}

inline void check_color_matrix(const at::Tensor& k, const Geometry& g, const at::Tensor& like) {
  TORCH_CHECK(k.dim() == 2 && k.size(0) == g.channels && k.size(1) == g.channels, "color_matrix must be (",
              g.channels, ", ", g.channels, "), got ", k.sizes());
  check_float(k, "color_matrix", like.scalar_type());
  TORCH_CHECK(k.device() == like.device(), "color_matrix must be on ", like.device());
}

inline void check_same(const at::Tensor& t, const at::Tensor& like, const char* name) {
  check_float(t, name, like.scalar_type());
  TORCH_CHECK(t.device() == like.device(), name, " must be on ", like.device(), ", got ", t.device());
}

inline void check_backward_inputs(const at::Tensor& grad_out, const at::Tensor& head, const at::Tensor& x,
                                  const Geometry& g) {
  const std::vector<int64_t> image_shape{g.batch, g.channels, g.height, g.width};
  TORCH_CHECK(grad_out.sizes() == image_shape, "grad_out must have shape ", image_shape, ", got ", grad_out.sizes());
  TORCH_CHECK(x.sizes() == image_shape, "x must have shape ", image_shape, ", got ", x.sizes());
  check_same(grad_out, head, "grad_out");
  check_same(x, head, "x");
}

inline void check_device(const at::Tensor& t, const char* name, c10::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, name, " must be a ", c10::DeviceTypeName(type, true), " tensor for this kernel, got ",
              t.device());
}

inline void check_stats(const at::Tensor& t, const Geometry& g, int64_t columns, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == g.batch && t.size(1) == columns && t.scalar_type() == at::kDouble,
              name, " must be float64 (B, ", columns, ")");
}

// The two heads: the optimized input and the fixed tensor beside it.
enum class Head { kMaco, kFourier };

struct HeadNames {
  const char *head, *fixed, *stats;
  bool complex_pairs;
  int stats_columns;
};

inline HeadNames head_names(Head head) {
  return head == Head::kMaco ? HeadNames{"phase", "magnitude", "phase_stats", false, 2}
                             : HeadNames{"spectrum", "scale", "spectrum_stats", true, 3};
}

// Every check of a forward op's arguments, for the CPU and CUDA entry points alike.
inline Geometry check_forward_args(Head which, const at::Tensor& head, const at::Tensor& fixed, int64_t height,
                                   int64_t width, const at::Tensor& color_matrix, c10::DeviceType device) {
  const HeadNames names = head_names(which);
  check_device(head, names.head, device);
  const Geometry g = head_geometry(head, height, width, names.complex_pairs);
  check_same(fixed, head, names.fixed);
  if (which == Head::kFourier) TORCH_CHECK(fixed.dim() <= 2, "scale must broadcast to (H, Wr)");
  check_color_matrix(color_matrix, g, head);
  return g;
}

inline Geometry check_backward_args(Head which, const at::Tensor& grad_out, const at::Tensor& head,
                                    const at::Tensor& fixed, const at::Tensor& x, const at::Tensor& head_stats,
                                    const at::Tensor& image_stats, const at::Tensor& color_matrix,
                                    c10::DeviceType device) {
  TORCH_CHECK(x.dim() == 4, "x must be (B, C, H, W)");
  const int64_t height = head.dim() > 2 ? head.size(2) : 0;
  const Geometry g = check_forward_args(which, head, fixed, height, x.size(3), color_matrix, device);
  check_backward_inputs(grad_out, head, x, g);
  check_stats(head_stats, g, head_names(which).stats_columns, head_names(which).stats);
  check_stats(image_stats, g, 2, "image_stats");
  return g;
}

}  // namespace phasevis
