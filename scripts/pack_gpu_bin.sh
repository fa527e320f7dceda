#!/usr/bin/env bash
# Build machine: copy the GPU-side executables (stripped) and the shared libraries the GPU machine lacks
# (spdlog, fmt, sentencepiece) into .gpubin/ (git-ignored), so a device call can carry them instead of
# building there (shared/device.md, way 1). Build first with -DFC_CUDA_ARCHS=90a (or 80;90a).
#   scripts/pack_gpu_bin.sh [BUILD_DIR]     (default: build)
# On the GPU machine: export LD_LIBRARY_PATH=$PWD/.gpubin:$LD_LIBRARY_PATH; .gpubin/flashcore ...
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,6p' "$0"; exit 0; }
build=${1:-build}
rm -rf .gpubin && mkdir -p .gpubin
for f in "$build/flashcore" "$build/tests/gpu/fc_gpu_tests" "$build"/fc_bench_* "$build"/tools/fc_soak; do
  [[ -x $f ]] && strip -o ".gpubin/$(basename "$f")" "$f"
done
for lib in libspdlog.so.1.10 libfmt.so.9 libsentencepiece.so.0; do
  cp -L "/lib/x86_64-linux-gnu/$lib" .gpubin/
done
du -sh .gpubin
