#!/usr/bin/env bash
# Installs dependencies, builds FlashCore (CUDA too when nvcc is present) and runs every test with CTest.
# GPU tests are compiled everywhere and skipped, with a message, on machines without a GPU.
#   scripts/run_tests.sh [BUILD_DIR]              normal build + ctest (default: build)
#   scripts/run_tests.sh --sanitize [BUILD_DIR]   host code only (no CUDA) with ASan+UBSan + ctest (build-asan)
#   scripts/run_tests.sh --fuzz [SECONDS]         every fuzz target for SECONDS (15) each (scripts/fuzz.sh)
#   scripts/run_tests.sh --all [PREFIX]           all three (CI): PREFIX, PREFIX-asan, PREFIX-fuzz (build)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,7p' "$0"; exit 0; }
jobs=$(nproc)

normal() {  # normal BUILD_DIR
  scripts/setup.sh
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${FC_CMAKE_ARGS:-} >/dev/null
  cmake --build "$1" -j"$jobs"
  (cd "$1" && ctest --output-on-failure -j"$jobs" --timeout 600)
  echo "== install and Debian package (scripts/check_install.sh)"
  scripts/check_install.sh "$1"
  if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
    echo "note: no NVIDIA GPU here: gpu_tests (tests/gpu, the CUDA kernel tests) were built but SKIPPED;"
    echo "      run them on a GPU machine (scripts/gpu.sh test)."
  fi
}

# The whole CPU suite under AddressSanitizer (with LeakSanitizer) + UBSan: any report fails its test
# (-fno-sanitize-recover=undefined makes UBSan fatal). CUDA is off: the GPU half has its own
# compute-sanitizer path (scripts/gpu.sh sanitize).
sanitize() {  # sanitize BUILD_DIR
  scripts/setup.sh
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFC_ENABLE_CUDA=OFF -DFC_SANITIZE=ON >/dev/null
  cmake --build "$1" -j"$jobs"
  echo "== sanitizer build (ASan + UBSan, host code): ctest"
  (cd "$1" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:check_initialization_order=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs" --timeout 900)
}

case "${1:-}" in
  --sanitize) sanitize "${2:-build-asan}" ;;
  --fuzz) scripts/fuzz.sh --seconds "${2:-15}" ;;
  --all)
    prefix=${2:-build}
    normal "$prefix"
    sanitize "$prefix-asan"
    echo "== bounded fuzz run (scripts/fuzz.sh --runs 20000: fixed seed, deterministic)"
    scripts/fuzz.sh --runs 20000 --build "$prefix-fuzz"
    ;;
  *) normal "${1:-build}" ;;
esac
