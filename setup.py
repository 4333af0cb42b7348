"""Builds phasevis_ext._C: the CPU kernels always, the CUDA kernels when CUDA is available or
FORCE_CUDA=1 (which lets a machine without a GPU compile them, as CI does)."""
import glob
import os
import sys

from setuptools import setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension


def _want_cuda() -> bool:
    return os.environ.get("FORCE_CUDA", "0") == "1" or torch.cuda.is_available()


def _nvidia_cu13_dir() -> str | None:
    """The cuFFT headers and library ship in torch's nvidia pip dependency."""
    for path in sys.path:
        for name in ("cu13", "cufft"):
            candidate = os.path.join(path, "nvidia", name)
            if os.path.exists(os.path.join(candidate, "include", "cufft.h")):
                return candidate
    return None


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-DNDEBUG"]
    if not _want_cuda():
        return CppExtension("phasevis_ext._C", sources, extra_compile_args={"cxx": cxx_flags})

    # torch guesses CUDA_HOME from the nvcc on PATH (/usr/local/bin -> /usr/local), which has no cudart.
    os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    if not torch.cuda.is_available():
        # cpp_extension reads the arch list from the GPU and fails on an empty one without it.
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import CUDAExtension

    cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
    include_dirs, library_dirs = [], []
    nvidia = _nvidia_cu13_dir()
    if nvidia:
        include_dirs.append(os.path.join(nvidia, "include"))
        library_dirs.append(os.path.join(nvidia, "lib"))
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    return CUDAExtension(
        "phasevis_ext._C",
        sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        # The pip package ships only libcufft.so.12 (no unversioned symlink).
        extra_link_args=["-l:libcufft.so.12"] if nvidia else ["-lcufft"],
        runtime_library_dirs=library_dirs,
        extra_compile_args={
            "cxx": cxx_flags + ["-DPHASEVIS_WITH_CUDA"],
            "nvcc": ["-O3", "--use_fast_math", "-DPHASEVIS_WITH_CUDA"],
        },
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
