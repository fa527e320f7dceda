#!/usr/bin/env bash
# GPU machine: configure and build FlashCore against the unpacked packages in .deps/ (see gpu_deps.sh).
#   scripts/gpu_build.sh [TARGET ...]        (default: everything; BUILD_DIR=build-gpu unless set)
# Then: export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH; scripts/gpu.sh --bin build-gpu ...
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,4p' "$0"; exit 0; }
build=${BUILD_DIR:-build-gpu}
deps=$PWD/.deps/usr
export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DFC_CUDA_ARCHS=90a \
  -DCMAKE_PREFIX_PATH="$deps" ${FC_CMAKE_ARGS:-} >/dev/null
targets=(); for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
