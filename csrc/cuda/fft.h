// The two transforms of the CUDA synthesis, unnormalized, over the last two dimensions.
#pragma once

#include <ATen/ATen.h>

namespace phasevis {
namespace cuda_fft {

// Inverse real FFT of a contiguous (..., H, W/2 + 1) complex tensor into a new (..., H, W) one.
// The spectrum is scratch afterwards: cuFFT's c2r overwrites its input, and ATen's path pays a full
// copy of the spectrum to avoid that.
at::Tensor irfft2_consuming(at::Tensor& spectrum, int64_t width);

// Forward real FFT of a contiguous (..., H, W) real tensor into a new (..., H, W/2 + 1) complex one.
// The image is scratch afterwards too, which leaves cuFFT free in how it uses it.
at::Tensor rfft2_consuming(at::Tensor& image);

// Whether the transforms call cuFFT directly (built with its headers, and PHASEVIS_CUDA_FFT is not
// "aten") or go through ATen.
bool direct();

}  // namespace cuda_fft
}  // namespace phasevis
