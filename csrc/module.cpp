// Python module of the extension. The ops register themselves through TORCH_LIBRARY when the
// library loads; this module only reports how the library was built.
#include <torch/extension.h>

#ifdef PHASEVIS_WITH_CUDA
namespace phasevis::cuda_fft {
bool direct();
}
#endif

namespace {

const char* cpu_kernel_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "default";
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "phasevis_ext fused synthesis kernels";
  m.def("cpu_kernel_isa", &cpu_kernel_isa, "Which compiled clone of the CPU kernels this CPU runs.");
#ifdef PHASEVIS_WITH_CUDA
  m.attr("with_cuda") = true;
  m.attr("with_direct_cufft") = phasevis::cuda_fft::direct();
#else
  m.attr("with_cuda") = false;
  m.attr("with_direct_cufft") = false;
#endif
}
