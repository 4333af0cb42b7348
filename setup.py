"""Builds phasevis_ext._C: the CPU kernels always, the CUDA kernels when CUDA is available or
FORCE_CUDA=1 (which lets a machine without a GPU compile them, as CI does).

The CUDA kernels call cuFFT directly (csrc/cuda/fft.cu) when its header and library are found:
in the nvidia pip packages torch depends on (which ship only a versioned libcufft.so.N, hence
-l:libcufft.so.N) or in CUDA_HOME. Without them, or with PHASEVIS_DIRECT_CUFFT=0, the FFTs go
through ATen's cuFFT path instead.
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension


def _want_cuda() -> bool:
    return os.environ.get("FORCE_CUDA", "0") == "1" or torch.cuda.is_available()


def _find_cufft():
    """(include dir, library dir, library file name) of cuFFT, or None."""
    if os.environ.get("PHASEVIS_DIRECT_CUFFT", "1") == "0":
        return None
    roots = []
    try:
        import nvidia  # the namespace package of NVIDIA's pip wheels

        for base in nvidia.__path__:
            roots += sorted(glob.glob(os.path.join(base, "cu*"))) + [os.path.join(base, "cufft")]
    except ImportError:
        pass
    roots.append(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    for root in roots:
        header = os.path.join(root, "include", "cufft.h")
        for lib_dir in (os.path.join(root, "lib"), os.path.join(root, "lib64")):
            libs = sorted(glob.glob(os.path.join(lib_dir, "libcufft.so*")))
            libs = [lib for lib in libs if os.path.basename(lib) != "libcufft.so"] or libs
            if os.path.exists(header) and libs:
                return os.path.dirname(header), lib_dir, os.path.basename(libs[0])
    return None


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp"))
    # -fno-trapping-math: the kernels never unmask FP exceptions, and under GCC's default (trapping)
    # math it will not if-convert the clamps of fast_exp, which keeps the image loops scalar.
    # Neither flag changes a result.
    cxx_flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-DNDEBUG"]
    if not _want_cuda():
        return CppExtension("phasevis_ext._C", sources, extra_compile_args={"cxx": cxx_flags})

    # torch guesses CUDA_HOME from the nvcc on PATH (/usr/local/bin -> /usr/local), which has no cudart.
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    if not torch.cuda.is_available():
        # cpp_extension reads the arch list from the GPU and fails on an empty one without it.
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import CUDAExtension

    cpp_extension.CUDA_HOME = os.environ.get("CUDA_HOME", cpp_extension.CUDA_HOME)
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    nvcc_flags = ["-O3", "-DPHASEVIS_WITH_CUDA"]
    link = dict(include_dirs=[], library_dirs=[], extra_link_args=[])
    cufft = _find_cufft()
    if cufft:
        include_dir, lib_dir, lib_name = cufft
        nvcc_flags.append("-DPHASEVIS_DIRECT_CUFFT")
        link = dict(include_dirs=[include_dir], library_dirs=[lib_dir],
                    extra_link_args=[f"-l:{lib_name}", f"-Wl,-rpath,{lib_dir}"])
        print(f"phasevis_ext: cuFFT called directly ({lib_dir}/{lib_name})")
    else:
        print("phasevis_ext: cuFFT headers or library not found; FFTs go through ATen")
    return CUDAExtension(
        "phasevis_ext._C",
        sources,
        extra_compile_args={"cxx": cxx_flags + ["-DPHASEVIS_WITH_CUDA"], "nvcc": nvcc_flags},
        **link,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
