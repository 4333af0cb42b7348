"""The synthesis ops: phase or spectrum -> image, fused (csrc/, torch.ops.phasevis) or as the
pure-PyTorch reference, and the crop op the render loop feeds the model with."""
from .fused import (
                    crop_kernel_available,
                    crop_resize_op,
                    cuda_kernels_available,
                    extension_available,
                    extension_load_error,
                    fourier_synthesis_op,
                    maco_synthesis_op,
)

__all__ = ["crop_kernel_available", "crop_resize_op", "cuda_kernels_available", "extension_available",
           "extension_load_error", "fourier_synthesis_op", "maco_synthesis_op"]
