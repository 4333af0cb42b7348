// Autograd for the synthesis ops, in C++.
//
// At small sizes a synthesis step costs more host time than device time: with the autograd
// formula in Python (torch.library.register_autograd), the Python context set-up and backward
// call made up about half of a B=1, 224² forward+backward on an H100. Registered here under the
// Autograd key, the op saves its tensors and calls its backward op without entering Python.
// The fake kernels stay in Python (ops.py), so torch.compile and opcheck still see every op.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <utility>

namespace phasevis {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Both ops run through one autograd function with MACO's phase_scale as its last argument; the
// Fourier op has none and ignores it.
struct MacoOps {
  using Forward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, double, const at::Tensor&, double, double);
  using Backward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, double, double);
  static constexpr const char* kForward = "phasevis::maco_synthesis";
  static constexpr const char* kBackward = "phasevis::maco_synthesis_backward";

  template <typename Op, typename... Args>
  static auto call(const Op& op, double phase_scale, Args&&... args) {
    return op.call(std::forward<Args>(args)..., phase_scale);
  }
};

struct FourierOps {
  using Forward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, double, const at::Tensor&, double);
  using Backward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, double);
  static constexpr const char* kForward = "phasevis::fourier_synthesis";
  static constexpr const char* kBackward = "phasevis::fourier_synthesis_backward";

  template <typename Op, typename... Args>
  static auto call(const Op& op, double /*phase_scale*/, Args&&... args) {
    return op.call(std::forward<Args>(args)...);
  }
};

// head: the phase (MACO) or the spectrum (Fourier); fixed: the magnitude or the 1/f scale.
// Only the image is differentiable, and only with respect to head.
template <typename Ops>
struct SynthesisFunction : public torch::autograd::Function<SynthesisFunction<Ops>> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& head, const at::Tensor& fixed, int64_t height,
                               int64_t width, double lo, double hi, const at::Tensor& color_matrix, double eps,
                               double phase_scale) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(Ops::kForward, "").template typed<typename Ops::Forward>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [image, x, head_stats, image_stats] =
        Ops::call(op, phase_scale, head, fixed, height, width, lo, hi, color_matrix, eps);
    ctx->save_for_backward({head, fixed, x, head_stats, image_stats, color_matrix});
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["phase_scale"] = phase_scale;
    ctx->mark_non_differentiable({x, head_stats, image_stats});
    // Otherwise autograd fills zero gradients for x and the statistics: an image-sized memset
    // and three kernel launches per backward, for tensors no loss depends on.
    ctx->set_materialize_grads(false);
    return {image, x, head_stats, image_stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(Ops::kBackward, "").template typed<typename Ops::Backward>();
    at::Tensor grad_head;
    if (ctx->needs_input_grad(0) && grads[0].defined()) {
      const auto saved = ctx->get_saved_variables();
      grad_head = Ops::call(op, ctx->saved_data["phase_scale"].toDouble(), grads[0].contiguous(), saved[0], saved[1],
                            saved[2], saved[3], saved[4], saved[5], ctx->saved_data["lo"].toDouble(),
                            ctx->saved_data["hi"].toDouble(), ctx->saved_data["eps"].toDouble());
    }
    return {grad_head,    at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> maco_autograd(
    const at::Tensor& phase, const at::Tensor& magnitude, int64_t height, int64_t width, double lo, double hi,
    const at::Tensor& color_matrix, double eps, double phase_scale) {
  auto out = SynthesisFunction<MacoOps>::apply(phase, magnitude, height, width, lo, hi, color_matrix, eps,
                                               phase_scale);
  return {out[0], out[1], out[2], out[3]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fourier_autograd(
    const at::Tensor& spectrum, const at::Tensor& scale, int64_t height, int64_t width, double lo, double hi,
    const at::Tensor& color_matrix, double eps) {
  auto out = SynthesisFunction<FourierOps>::apply(spectrum, scale, height, width, lo, hi, color_matrix, eps, 1.0);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(phasevis, Autograd, m) {
  m.impl("maco_synthesis", &maco_autograd);
  m.impl("fourier_synthesis", &fourier_autograd);
}

}  // namespace phasevis
