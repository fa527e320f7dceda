#!/usr/bin/env bash
# The portable (non-Hopper) build: all GPU code as compute_80 PTX and no machine code, so the driver
# JIT-compiles at first launch exactly the kernels an A100, RTX 30xx/40xx, L4 or L40S runs (mma.sync
# attention, register GEMV; no wgmma, no bulk copies, no programmatic launch). Run on an H200, it proves
# the sm_80 path on the hardware we have (docs/COMPATIBILITY.md). The first launch of each kernel is slow
# (JIT; cached in ~/.nv/ComputeCache): warm up before timing.
#   scripts/build_portable.sh [--no-bench] [-j N] [BUILD_DIR] [-- CMAKE ARGS...]    (BUILD_DIR: build-ptx80)
# Builds flashcore, fc_gpu_tests and the kernel benchmarks fc_bench_* (--no-bench: not those). Then e.g.
#   scripts/pack_gpu_bin.sh --out .gpubin-ptx80 build-ptx80, and on the GPU machine
#   scripts/gpu.sh --bin .gpubin-ptx80 all    (`flashcore --version` names the code it carries: compute_80 (PTX))
set -euo pipefail
me=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
bench=1
jobs=$(nproc)
cmake_args=()
build=""
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,10p' "$me"; exit 0 ;;
    --no-bench) bench=0; shift ;;
    -j) jobs=${2:?-j N}; shift 2 ;;
    -j*) jobs=${1#-j}; shift ;;
    --) shift; cmake_args=("$@"); break ;;
    -*) echo "build_portable.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [[ -z $build ]] || { echo "build_portable.sh: one BUILD_DIR only (got '$build' and '$1')" >&2; exit 2; }
       build=$1; shift ;;
  esac
done
build=${build:-build-ptx80}
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
# FC_CUDA_ARCHS empty: none of the default sm_80 / sm_90a machine code; the one -gencode asks for PTX only.
cmake -S . -B "$build" "${gen[@]}" -DFC_ENABLE_CUDA=ON -DFC_CUDA_ARCHS="" \
  -DCMAKE_CUDA_FLAGS="-gencode=arch=compute_80,code=compute_80" "${cmake_args[@]}"
grep -Eq '^CMAKE_CUDA_COMPILER:[A-Z]+=/' "$build/CMakeCache.txt" ||
  { echo "build_portable.sh: CMake found no nvcc (put it on PATH or set CUDACXX): nothing to build" >&2; exit 1; }

targets=(flashcore fc_gpu_tests)
if ((bench)); then
  for src in kernels/bench/bench_*.cu; do
    [[ -e $src ]] && targets+=("fc_$(basename "$src" .cu)")
  done
fi
target_args=(); for t in "${targets[@]}"; do target_args+=(--target "$t"); done
cmake --build "$build" -j"$jobs" "${target_args[@]}"
echo "built in $build: ${targets[*]}"
"$build/flashcore" --version || true
