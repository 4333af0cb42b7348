// The whole op surface of torch.ops.phasevis, in one place. The kernels register themselves in
// their backend's files: csrc/synthesis.cpp and csrc/crop_resize.cpp (CPU), csrc/cuda/synthesis.cu
// (CUDA), csrc/synthesis_autograd.cpp (Autograd); the fake kernels are in phasevis_ext/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(phasevis, m) {
  // Each synthesis forward returns the image plus what its backward needs (x, the unnormalized
  // inverse transform, and the per-sample statistics), so that nothing is recomputed but x̂'s two
  // flops per element. The CPU kernels raise ValueError for a non-finite head or fixed input.
  // MACO's spectrum is M·exp(i·phase_scale·φ̂): phase_scale sets the spread of the standardized
  // phase (1 is MACO's and Horama's; synthesis.py says why the library renders at π/√3).
  m.def(
      "maco_synthesis(Tensor phase, Tensor magnitude, int height, int width, float lo, float hi, "
      "Tensor color_matrix, float eps, float phase_scale=1.0) -> (Tensor image, Tensor x, Tensor phase_stats, "
      "Tensor image_stats)");
  m.def(
      "maco_synthesis_backward(Tensor grad_out, Tensor phase, Tensor magnitude, Tensor x, Tensor phase_stats, "
      "Tensor image_stats, Tensor color_matrix, float lo, float hi, float eps, float phase_scale=1.0) -> Tensor");
  m.def(
      "fourier_synthesis(Tensor spectrum, Tensor scale, int height, int width, float lo, float hi, "
      "Tensor color_matrix, float eps) -> (Tensor image, Tensor x, Tensor spectrum_stats, Tensor image_stats)");
  m.def(
      "fourier_synthesis_backward(Tensor grad_out, Tensor spectrum, Tensor scale, Tensor x, "
      "Tensor spectrum_stats, Tensor image_stats, Tensor color_matrix, float lo, float hi, float eps) -> Tensor");
  // Square crops resized with roi_align's values (transform.random_crops), and the crops' backward.
  m.def("crop_resize(Tensor images, Tensor boxes, int out_size) -> Tensor");
  m.def("crop_resize_backward(Tensor grad, Tensor boxes, int batch, int height, int width) -> Tensor");
}
