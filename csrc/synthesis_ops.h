// The synthesis ops' entry points, one set for every backend: the argument checks, the contiguous
// inputs, the head each op reads (chunks::MacoHead or chunks::FourierHead) and the dtype dispatch.
// A backend supplies its drivers, which run the chunk functions:
//
//   struct Drivers {
//     static constexpr c10::DeviceType kDevice = ...;
//     using Guard = ...;  // made from the inputs' device before any work (CUDA: the device guard)
//     template <typename T, typename Head>
//     static SynthesisOutputs forward(const Head&, const at::Tensor& values, const at::Tensor& fixed,
//                                     const HeadNames&, const Geometry&, const at::Tensor& color_matrix,
//                                     double lo, double hi, double eps);
//     template <typename T, typename Head>
//     static at::Tensor backward(const Head&, const at::Tensor& values, const Geometry&, const at::Tensor& grad_out,
//                                const at::Tensor& x, const at::Tensor& head_stats, const at::Tensor& image_stats,
//                                const at::Tensor& color_matrix, double lo, double hi, double eps);
//   };
//
// `values` is the head's input, contiguous (what the head points into), and `fixed` the magnitude
// or scale as the caller passed it: both only to name an argument in an error.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "synthesis_checks.h"
#include "synthesis_chunks.h"

namespace phasevis {

using SynthesisOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// For backends with nothing to set up per call.
struct NoGuard {
  explicit NoGuard(const c10::Device&) {}
};

template <typename Drivers>
struct SynthesisOps {
  static SynthesisOutputs maco(const at::Tensor& phase_in, const at::Tensor& magnitude_in, int64_t height,
                               int64_t width, double lo, double hi, const at::Tensor& color_matrix, double eps,
                               double phase_scale) {
    check_phase_scale(phase_scale);
    const Geometry g =
        check_forward_args(Head::kMaco, phase_in, magnitude_in, height, width, color_matrix, Drivers::kDevice);
    const typename Drivers::Guard guard(phase_in.device());
    const at::Tensor phase = phase_in.contiguous(), k = color_matrix.contiguous();
    const auto magnitude = per_sample_or_shared(magnitude_in, g, "magnitude");
    return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis", [&] {
      return Drivers::template forward<scalar_t>(maco_head<scalar_t>(phase, magnitude, g, phase_scale), phase, magnitude_in,
                                                 head_names(Head::kMaco), g, k, lo, hi, eps);
    });
  }

  static at::Tensor maco_backward(const at::Tensor& grad_out, const at::Tensor& phase_in,
                                  const at::Tensor& magnitude_in, const at::Tensor& x, const at::Tensor& phase_stats,
                                  const at::Tensor& image_stats, const at::Tensor& color_matrix, double lo, double hi,
                                  double eps, double phase_scale) {
    check_phase_scale(phase_scale);
    const Geometry g = check_backward_args(Head::kMaco, grad_out, phase_in, magnitude_in, x, phase_stats,
                                           image_stats, color_matrix, Drivers::kDevice);
    const typename Drivers::Guard guard(phase_in.device());
    const at::Tensor phase = phase_in.contiguous(), k = color_matrix.contiguous();
    const auto magnitude = per_sample_or_shared(magnitude_in, g, "magnitude");
    return AT_DISPATCH_FLOATING_TYPES(phase.scalar_type(), "maco_synthesis_backward", [&] {
      return Drivers::template backward<scalar_t>(maco_head<scalar_t>(phase, magnitude, g, phase_scale), phase, g, grad_out, x,
                                                  phase_stats, image_stats, k, lo, hi, eps);
    });
  }

  static SynthesisOutputs fourier(const at::Tensor& spectrum_in, const at::Tensor& scale_in, int64_t height,
                                  int64_t width, double lo, double hi, const at::Tensor& color_matrix, double eps) {
    const Geometry g =
        check_forward_args(Head::kFourier, spectrum_in, scale_in, height, width, color_matrix, Drivers::kDevice);
    const typename Drivers::Guard guard(spectrum_in.device());
    const at::Tensor z = spectrum_in.contiguous(), k = color_matrix.contiguous();
    const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
    return AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fourier_synthesis", [&] {
      return Drivers::template forward<scalar_t>(fourier_head<scalar_t>(z, scale, g), z, scale_in,
                                                 head_names(Head::kFourier), g, k, lo, hi, eps);
    });
  }

  static at::Tensor fourier_backward(const at::Tensor& grad_out, const at::Tensor& spectrum_in,
                                     const at::Tensor& scale_in, const at::Tensor& x,
                                     const at::Tensor& spectrum_stats, const at::Tensor& image_stats,
                                     const at::Tensor& color_matrix, double lo, double hi, double eps) {
    const Geometry g = check_backward_args(Head::kFourier, grad_out, spectrum_in, scale_in, x, spectrum_stats,
                                           image_stats, color_matrix, Drivers::kDevice);
    const typename Drivers::Guard guard(spectrum_in.device());
    const at::Tensor z = spectrum_in.contiguous(), k = color_matrix.contiguous();
    const at::Tensor scale = scale_in.expand({g.height, g.half_width}).contiguous();
    return AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fourier_synthesis_backward", [&] {
      return Drivers::template backward<scalar_t>(fourier_head<scalar_t>(z, scale, g), z, g, grad_out, x,
                                                  spectrum_stats, image_stats, k, lo, hi, eps);
    });
  }

 private:
  template <typename T>
  static chunks::MacoHead<T> maco_head(const at::Tensor& phase, const std::pair<at::Tensor, int64_t>& magnitude,
                                       const Geometry& g, double phase_scale) {
    return {phase.const_data_ptr<T>(), magnitude.first.const_data_ptr<T>(), magnitude.second, g.spectrum_numel(),
            T(phase_scale)};
  }

  // A RuntimeError, not a ValueError: the ValueErrors of these ops are the inputs' finiteness only.
  static void check_phase_scale(double phase_scale) {
    TORCH_CHECK(std::isfinite(phase_scale) && phase_scale > 0.0, "phase_scale must be finite and > 0, got ",
                phase_scale);
  }

  template <typename T>
  static chunks::FourierHead<T> fourier_head(const at::Tensor& z, const at::Tensor& scale, const Geometry& g) {
    return {z.const_data_ptr<T>(), scale.const_data_ptr<T>(), g.spectrum_numel()};
  }
};

// The four synthesis kernels of a backend, for its TORCH_LIBRARY_IMPL block.
template <typename Drivers>
void register_synthesis_kernels(torch::Library& m) {
  m.impl("maco_synthesis", &SynthesisOps<Drivers>::maco);
  m.impl("maco_synthesis_backward", &SynthesisOps<Drivers>::maco_backward);
  m.impl("fourier_synthesis", &SynthesisOps<Drivers>::fourier);
  m.impl("fourier_synthesis_backward", &SynthesisOps<Drivers>::fourier_backward);
}

}  // namespace phasevis
