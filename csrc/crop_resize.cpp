// Batched square crops resized with antialiasing: the CPU op behind transform.random_crops.
//
// Same values as torchvision.ops.roi_align(aligned=True, sampling_ratio=-1): each output pixel
// averages ceil(box/out) x ceil(box/out) bilinear samples. Bilinear sampling and the sample grid
// are both separable, so a crop is Ay · image · Axᵀ with banded Ay (out x H) and Ax (out x W).
// Doing it as two banded passes costs O(out · box · taps) per crop instead of roi_align's
// per-sample gathers, and the backward (Ayᵀ · grad · Ax) runs in parallel over (image, channel)
// planes with no atomics: torchvision's CPU backward is serial and was ~20% of a lite0 step.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "synthesis_math.h"

namespace phasevis {
namespace {

// One axis of one crop: output i reads source[start[i] + j] * weight[i * span + j], j < span.
struct Taps {
  std::vector<int64_t> start;
  std::vector<double> weight;
  int64_t span = 0;
  int64_t lo = 0, hi = 0;  // source range [lo, hi) touched by any output
};

// roi_align's sampling along one axis (aligned=True, adaptive grid), in the tensor's scalar
// type so the sample positions round exactly as torchvision's do.
template <typename T>
Taps axis_taps(T box_start, T box_end, int64_t out, int64_t size) {
  const T roi_start = box_start - T(0.5);
  const T roi_size = box_end - T(0.5) - roi_start;
  const T bin = roi_size / static_cast<T>(out);
  const int64_t grid = static_cast<int64_t>(std::ceil(roi_size / static_cast<T>(out)));
  Taps taps;
  taps.start.assign(out, 0);
  if (grid <= 0) {  // an empty box: roi_align returns zeros
    taps.span = 1;
    taps.weight.assign(out, 0.0);
    return taps;
  }
  // Sample i of output o covers at most rows floor(first) .. floor(last) + 1.
  std::vector<std::vector<std::pair<int64_t, double>>> per_out(out);
  int64_t span = 1;
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t s = 0; s < grid; ++s) {
      T y = roi_start + static_cast<T>(o) * bin + (static_cast<T>(s) + T(0.5)) * bin / static_cast<T>(grid);
      if (y < T(-1) || y > static_cast<T>(size)) continue;  // outside: the sample is zero
      if (y <= 0) y = 0;
      int64_t low = static_cast<int64_t>(y), high;
      if (low >= size - 1) {
        high = low = size - 1;
        y = static_cast<T>(low);
      } else {
        high = low + 1;
      }
      const T frac = y - static_cast<T>(low);
      per_out[o].emplace_back(low, double(T(1) - frac) / grid);
      per_out[o].emplace_back(high, double(frac) / grid);
    }
    if (!per_out[o].empty()) {
      int64_t first = per_out[o].front().first, last = first;
      for (auto& [idx, w] : per_out[o]) first = std::min(first, idx), last = std::max(last, idx);
      taps.start[o] = first;
      span = std::max(span, last - first + 1);
    }
  }
  // Bands of one width `span` (<= size), each kept inside the source.
  taps.span = span;
  taps.weight.assign(out * span, 0.0);
  taps.lo = size;
  taps.hi = 0;
  for (int64_t o = 0; o < out; ++o) {
    if (per_out[o].empty()) continue;
    taps.start[o] = std::min(taps.start[o], size - span);
    for (auto& [idx, w] : per_out[o]) taps.weight[o * span + idx - taps.start[o]] += w;
    taps.lo = std::min(taps.lo, taps.start[o]);
    taps.hi = std::max(taps.hi, taps.start[o] + span);
  }
  if (taps.lo >= taps.hi) {  // every sample fell outside the source
    taps.lo = taps.hi = 0;
    taps.span = 1;
    taps.weight.assign(out, 0.0);
  }
  // Outputs with no samples point at the band's start: their zero weights then read in range.
  for (int64_t o = 0; o < out; ++o)
    if (per_out[o].empty()) taps.start[o] = taps.lo;
  return taps;
}

struct CropPlan {
  int64_t image;
  Taps rows, cols;
};

template <typename T>
std::vector<CropPlan> plan_crops(const at::Tensor& boxes, int64_t batch, int64_t height, int64_t width, int64_t out) {
  auto b = boxes.accessor<T, 2>();
  std::vector<CropPlan> plans(boxes.size(0));
  for (int64_t k = 0; k < boxes.size(0); ++k) {
    const double index = double(b[k][0]);
    TORCH_CHECK(std::isfinite(index) && index == std::floor(index) && index >= 0 && index < batch,
                "crop_resize: boxes[", k, ", 0] must be an image index in [0, ", batch, "), got ", index);
    for (int j = 1; j < 5; ++j)
      TORCH_CHECK(std::isfinite(double(b[k][j])), "crop_resize: boxes[", k, "] must be finite");
    // The sample grid grows with the box: a box many times the image is a caller's error, and
    // would otherwise ask for billions of samples.
    const double box_w = double(b[k][3]) - double(b[k][1]), box_h = double(b[k][4]) - double(b[k][2]);
    TORCH_CHECK(box_w <= 4.0 * (width + 1) && box_h <= 4.0 * (height + 1), "crop_resize: boxes[", k,
                "] is ", box_w, " x ", box_h, ", more than 4 times the ", width, " x ", height, " image");
    plans[k].image = static_cast<int64_t>(index);
    plans[k].rows = axis_taps<T>(b[k][2], b[k][4], out, height);
    plans[k].cols = axis_taps<T>(b[k][1], b[k][3], out, width);
  }
  return plans;
}

void check_args(const at::Tensor& boxes, int64_t out_size, const at::Tensor& like, const char* name) {
  TORCH_CHECK(like.device().is_cpu() && boxes.device().is_cpu(), "crop_resize: the CPU kernel needs CPU tensors");
  TORCH_CHECK(like.scalar_type() == at::kFloat || like.scalar_type() == at::kDouble,
              "crop_resize: ", name, " must be float32 or float64, got ", like.scalar_type());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 5, "crop_resize: boxes must be (K, 5) rows of (index, x1, y1, x2, y2)");
  TORCH_CHECK(boxes.scalar_type() == like.scalar_type(), "crop_resize: boxes must have the dtype of ", name);
  TORCH_CHECK(out_size >= 1, "crop_resize: out_size must be >= 1, got ", out_size);
}

// ---------------------------------------------------------------------------
// Passes (vectorized over the contiguous source row; compiled per ISA)
// ---------------------------------------------------------------------------

template <typename T>
PV_CPU_CLONES void axpy_row(T* __restrict acc, const T* __restrict src, T w, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += w * src[i];
}

// One (crop, channel) plane: out = Ay · plane[:, lo:hi] · Axᵀ.
template <typename T>
void crop_plane(const T* plane, int64_t width, const CropPlan& p, int64_t out, T* dst, std::vector<T>& tmp) {
  const int64_t lo = p.cols.lo, n = p.cols.hi - p.cols.lo;
  tmp.assign(out * std::max<int64_t>(n, 1), T(0));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < p.rows.span; ++j) {
      const T w = static_cast<T>(p.rows.weight[o * p.rows.span + j]);
      if (w != T(0)) axpy_row(tmp.data() + o * n, plane + (p.rows.start[o] + j) * width + lo, w, n);
    }
  for (int64_t o = 0; o < out; ++o) {
    const T* row = tmp.data() + o * n;
    for (int64_t q = 0; q < out; ++q) {
      const double* w = p.cols.weight.data() + q * p.cols.span;
      const T* src = row + (p.cols.start[q] - lo);
      T acc = 0;
      for (int64_t j = 0; j < p.cols.span; ++j) acc += static_cast<T>(w[j]) * src[j];
      dst[o * out + q] = acc;
    }
  }
}

// One crop's contribution to its image plane's gradient: grad_plane += Ayᵀ · grad · Ax.
template <typename T>
void crop_plane_backward(const T* grad, int64_t width, const CropPlan& p, int64_t out, T* grad_plane,
                         std::vector<T>& tmp) {
  const int64_t lo = p.cols.lo, n = p.cols.hi - p.cols.lo;
  tmp.assign(out * std::max<int64_t>(n, 1), T(0));
  for (int64_t o = 0; o < out; ++o) {
    T* row = tmp.data() + o * n;
    for (int64_t q = 0; q < out; ++q) {
      const T g = grad[o * out + q];
      const double* w = p.cols.weight.data() + q * p.cols.span;
      T* dst = row + (p.cols.start[q] - lo);
      for (int64_t j = 0; j < p.cols.span; ++j) dst[j] += static_cast<T>(w[j]) * g;
    }
  }
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < p.rows.span; ++j) {
      const T w = static_cast<T>(p.rows.weight[o * p.rows.span + j]);
      if (w != T(0)) axpy_row(grad_plane + (p.rows.start[o] + j) * width + lo, tmp.data() + o * n, w, n);
    }
}

at::Tensor crop_resize_cpu(const at::Tensor& images_in, const at::Tensor& boxes_in, int64_t out_size) {
  TORCH_CHECK(images_in.dim() == 4, "crop_resize: images must be (N, C, H, W), got ", images_in.dim(), " dimensions");
  check_args(boxes_in, out_size, images_in, "images");
  const at::Tensor images = images_in.contiguous(), boxes = boxes_in.contiguous();
  const int64_t batch = images.size(0), channels = images.size(1), height = images.size(2), width = images.size(3);
  at::Tensor out = at::empty({boxes.size(0), channels, out_size, out_size}, images.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(images.scalar_type(), "crop_resize", [&] {
    const auto plans = plan_crops<scalar_t>(boxes, batch, height, width, out_size);
    const scalar_t* src = images.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const int64_t plane = height * width, out_plane = out_size * out_size;
    at::parallel_for(0, boxes.size(0) * channels, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> tmp;
      for (int64_t task = begin; task < end; ++task) {
        const CropPlan& p = plans[task / channels];
        const int64_t c = task % channels;
        crop_plane(src + (p.image * channels + c) * plane, width, p, out_size, dst + task * out_plane, tmp);
      }
    });
  });
  return out;
}

at::Tensor crop_resize_backward_cpu(const at::Tensor& grad_in, const at::Tensor& boxes_in, int64_t batch,
                                    int64_t height, int64_t width) {
  TORCH_CHECK(grad_in.dim() == 4 && grad_in.size(2) == grad_in.size(3),
              "crop_resize_backward: grad must be (K, C, out, out)");
  check_args(boxes_in, grad_in.size(2), grad_in, "grad");
  TORCH_CHECK(boxes_in.size(0) == grad_in.size(0), "crop_resize_backward: one box per grad row");
  TORCH_CHECK(batch >= 1 && height >= 1 && width >= 1, "crop_resize_backward: bad image shape");
  const at::Tensor grad = grad_in.contiguous(), boxes = boxes_in.contiguous();
  const int64_t channels = grad.size(1), out_size = grad.size(2);
  at::Tensor grad_images = at::zeros({batch, channels, height, width}, grad.options());
  if (grad.numel() == 0) return grad_images;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "crop_resize_backward", [&] {
    const auto plans = plan_crops<scalar_t>(boxes, batch, height, width, out_size);
    std::vector<std::vector<int64_t>> crops_of(batch);
    for (int64_t k = 0; k < static_cast<int64_t>(plans.size()); ++k) crops_of[plans[k].image].push_back(k);
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* dst = grad_images.data_ptr<scalar_t>();
    const int64_t plane = height * width, out_plane = out_size * out_size;
    // One task per image plane: the crops of an image add into it in a fixed order, so the
    // result is deterministic and needs no atomics.
    at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> tmp;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / channels, c = task % channels;
        for (int64_t k : crops_of[b])
          crop_plane_backward(g + (k * channels + c) * out_plane, width, plans[k], out_size, dst + task * plane, tmp);
      }
    });
  });
  return grad_images;
}

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, CPU, m) {
  m.impl("crop_resize", &crop_resize_cpu);
  m.impl("crop_resize_backward", &crop_resize_backward_cpu);
}

}  // namespace phasevis
