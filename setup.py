"""Builds phasevis_ext._C: the CPU kernels always, the CUDA kernels when CUDA is available or
FORCE_CUDA=1 (which lets a machine without a GPU compile them, as CI does).

The CUDA kernels run their FFTs through ATen's cuFFT path (plans cached per shape, dtype and
device, on the current stream), so nothing links against cuFFT directly; that also avoids the
pip wheel's lack of an unversioned libcufft.so.
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension


def _want_cuda() -> bool:
    return os.environ.get("FORCE_CUDA", "0") == "1" or torch.cuda.is_available()


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-DNDEBUG"]
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
    return CUDAExtension(
        "phasevis_ext._C",
        sources,
        extra_compile_args={
            "cxx": cxx_flags + ["-DPHASEVIS_WITH_CUDA"],
            "nvcc": ["-O3", "-DPHASEVIS_WITH_CUDA"],
        },
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
