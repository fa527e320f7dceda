#!/usr/bin/env bash
# Installs dependencies, builds FlashCore (CUDA too when nvcc is present) and runs every test with CTest.
# GPU tests are compiled everywhere and skipped, with a message, on machines without a GPU.
#   scripts/run_tests.sh [BUILD_DIR]       (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,4p' "$0"; exit 0; }
build=${1:-build}
scripts/setup.sh
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${FC_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$jobs"
cd "$build"
ctest --output-on-failure -j"$jobs" --timeout 600
if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "note: no NVIDIA GPU here: gpu_tests (tests/gpu, the CUDA kernel tests) were built but SKIPPED;"
  echo "      run them on a GPU machine (scripts/gpu_check.sh)."
fi
