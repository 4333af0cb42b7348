// cuFFT called directly, with 2-D plans cached per (device, precision, direction, batch, H, W).
//
// Why not ATen's path (at::_fft_c2r / _fft_r2c): for a 2-D c2r it runs a c2c over H and a 1-D c2r
// over W and copies the whole spectrum once more on the way (measured on an H100 at batch 8, 1024²:
// a 67 µs device-to-device copy next to 165 µs of transforms). A 2-D cuFFT plan on buffers the
// caller gives up needs no copy; the synthesis's spectrum and image gradient are such scratch.
//
// Like ATen, plans run on the current stream and take their work area from the caching allocator
// (stream-ordered, so CUDA-graph capture works once the plan exists); a plan's stream and work area
// are set and the transform enqueued under the plan's lock, as several threads may share it. Plans
// are never destroyed while the process runs: a destroyed plan's tables could still be in use by
// enqueued work. Built without cufft.h (PHASEVIS_DIRECT_CUFFT unset), or for a shape cuFFT cannot
// plan, the transforms go through ATen.
#include "fft.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <string>

#ifdef PHASEVIS_DIRECT_CUFFT
#include <cufft.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#endif

namespace phasevis {
namespace cuda_fft {
namespace {

at::Tensor aten_irfft2(const at::Tensor& spectrum, int64_t width) {
  return at::_fft_c2r(spectrum, at::IntArrayRef{-2, -1}, /*normalization=*/0, width).contiguous();
}

at::Tensor aten_rfft2(const at::Tensor& image) {
  return at::_fft_r2c(image, at::IntArrayRef{-2, -1}, /*normalization=*/0, /*onesided=*/true).contiguous();
}

#ifdef PHASEVIS_DIRECT_CUFFT

void check_cufft(cufftResult result, const char* what) {
  TORCH_CHECK(result == CUFFT_SUCCESS, "cuFFT ", what, " failed with cufftResult ", int(result));
}

struct Plan {
  cufftHandle handle = 0;
  size_t work_size = 0;
  std::mutex mutex;
};

// (device, double precision, inverse, batch, H, W)
using PlanKey = std::tuple<int, bool, bool, int64_t, int64_t, int64_t>;

// The cached plan for these sizes, or nullptr where cuFFT could not make one (remembered, so the
// caller goes through ATen for that shape from then on, with one warning).
Plan* cached_plan(const PlanKey& key) {
  static std::mutex cache_mutex;
  static std::map<PlanKey, std::unique_ptr<Plan>> cache;
  const std::lock_guard<std::mutex> lock(cache_mutex);
  const auto found = cache.find(key);
  if (found != cache.end()) return found->second.get();
  auto plan = std::make_unique<Plan>();
  const bool is_double = std::get<1>(key), inverse = std::get<2>(key);
  const int64_t batch = std::get<3>(key), height = std::get<4>(key), width = std::get<5>(key);
  const cufftType type = inverse ? (is_double ? CUFFT_Z2D : CUFFT_C2R) : (is_double ? CUFFT_D2Z : CUFFT_R2C);
  long long n[2] = {height, width};
  cufftResult result = cufftCreate(&plan->handle);
  const bool created = result == CUFFT_SUCCESS;
  // The work area comes from the caching allocator at each call, not from cuFFT's own cudaMalloc.
  if (result == CUFFT_SUCCESS) result = cufftSetAutoAllocation(plan->handle, 0);
  if (result == CUFFT_SUCCESS)
    result = cufftMakePlanMany64(plan->handle, 2, n, nullptr, 1, 0, nullptr, 1, 0, type, batch, &plan->work_size);
  if (result != CUFFT_SUCCESS) {
    if (created) cufftDestroy(plan->handle);  // never executed, safe to destroy
    TORCH_WARN("phasevis: cuFFT could not plan a ", height, "x", width, " transform of batch ", batch,
               " (cufftResult ", int(result), "); using ATen's FFT for it");
    plan.reset();
  }
  return (cache[key] = std::move(plan)).get();
}

// Runs `exec` on the plan for these sizes, on the current stream, with a work area. False, with
// nothing run, where there is no plan.
template <typename Exec>
bool run(const at::Tensor& like, bool inverse, int64_t batch, int64_t height, int64_t width, Exec&& exec) {
  const PlanKey key{like.get_device(), like.scalar_type() == at::kDouble || like.scalar_type() == at::kComplexDouble,
                    inverse, batch, height, width};
  Plan* plan = cached_plan(key);
  if (plan == nullptr) return false;
  const at::Tensor work =
      at::empty({int64_t(std::max<size_t>(plan->work_size, 1))}, like.options().dtype(at::kByte));
  const std::lock_guard<std::mutex> lock(plan->mutex);
  check_cufft(cufftSetStream(plan->handle, c10::cuda::getCurrentCUDAStream()), "setting the stream");
  check_cufft(cufftSetWorkArea(plan->handle, work.data_ptr()), "setting the work area");
  check_cufft(exec(plan->handle), inverse ? "c2r execution" : "r2c execution");
  return true;
}

// cuFFT's 2-D plans want both sizes above 1 and int-sized batches; other shapes go through ATen.
bool direct_fits(int64_t batch, int64_t height, int64_t width) {
  return height > 1 && width > 1 && batch <= (int64_t(1) << 30);
}

int64_t leading_batch(const at::Tensor& t) {
  int64_t batch = 1;
  for (int64_t d = 0; d + 2 < t.dim(); ++d) batch *= t.size(d);
  return batch;
}

#endif  // PHASEVIS_DIRECT_CUFFT

}  // namespace

bool direct() {
#ifdef PHASEVIS_DIRECT_CUFFT
  // PHASEVIS_CUDA_FFT=aten: ATen's path in a build that has the direct one, to compare the two.
  static const bool use_direct = [] {
    const char* choice = std::getenv("PHASEVIS_CUDA_FFT");
    return choice == nullptr || std::string(choice) != "aten";
  }();
  return use_direct;
#else
  return false;
#endif
}

at::Tensor irfft2_consuming(at::Tensor& spectrum, int64_t width) {
  TORCH_CHECK(spectrum.is_contiguous() && spectrum.dim() >= 2 && spectrum.size(-1) == width / 2 + 1,
              "irfft2_consuming needs a contiguous (..., H, width // 2 + 1) spectrum");
#ifdef PHASEVIS_DIRECT_CUFFT
  const int64_t batch = leading_batch(spectrum), height = spectrum.size(-2);
  if (direct() && direct_fits(batch, height, width)) {
    const c10::cuda::CUDAGuard guard(spectrum.device());
    std::vector<int64_t> sizes = spectrum.sizes().vec();
    sizes.back() = width;
    at::Tensor image = at::empty(sizes, spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type())));
    const bool ran = run(spectrum, /*inverse=*/true, batch, height, width, [&](cufftHandle plan) {
      return spectrum.scalar_type() == at::kComplexDouble
                 ? cufftExecZ2D(plan, reinterpret_cast<cufftDoubleComplex*>(spectrum.data_ptr()),
                                image.data_ptr<double>())
                 : cufftExecC2R(plan, reinterpret_cast<cufftComplex*>(spectrum.data_ptr()), image.data_ptr<float>());
    });
    if (ran) return image;
  }
#endif
  return aten_irfft2(spectrum, width);
}

at::Tensor rfft2_consuming(at::Tensor& image) {
  TORCH_CHECK(image.is_contiguous() && image.dim() >= 2, "rfft2_consuming needs a contiguous (..., H, W) image");
#ifdef PHASEVIS_DIRECT_CUFFT
  const int64_t batch = leading_batch(image), height = image.size(-2), width = image.size(-1);
  if (direct() && direct_fits(batch, height, width)) {
    const c10::cuda::CUDAGuard guard(image.device());
    std::vector<int64_t> sizes = image.sizes().vec();
    sizes.back() = width / 2 + 1;
    at::Tensor spectrum = at::empty(sizes, image.options().dtype(c10::toComplexType(image.scalar_type())));
    const bool ran = run(image, /*inverse=*/false, batch, height, width, [&](cufftHandle plan) {
      return image.scalar_type() == at::kDouble
                 ? cufftExecD2Z(plan, image.data_ptr<double>(),
                                reinterpret_cast<cufftDoubleComplex*>(spectrum.data_ptr()))
                 : cufftExecR2C(plan, image.data_ptr<float>(),
                                reinterpret_cast<cufftComplex*>(spectrum.data_ptr()));
    });
    if (ran) return spectrum;
  }
#endif
  return aten_rfft2(image);
}

}  // namespace cuda_fft
}  // namespace phasevis
