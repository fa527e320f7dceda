#!/usr/bin/env bash
# Build machine: copy the GPU-side executables (stripped) and the shared libraries the GPU machine lacks
# (spdlog, fmt, sentencepiece: wherever the linker found them here) into a folder a device call carries, so
# nothing is built there (shared/device.md, way 1). Build first with -DFC_CUDA_ARCHS=90a (or 80;90a).
#   scripts/pack_gpu_bin.sh [--out DIR] [BUILD_DIR]     (DIR default .gpubin, git-ignored; BUILD_DIR: build)
#   an older build for scripts/gpu.sh ab:  scripts/pack_gpu_bin.sh --out .gpubin-old build-old
# DIR/PACKED names the build folder and the commit. On the GPU machine: scripts/gpu.sh [--bin DIR] ...
set -euo pipefail
me=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
out=.gpubin
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,7p' "$me"; exit 0 ;;
    --out) out=${2:?--out DIR}; shift 2 ;;
    -*) echo "pack_gpu_bin.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
build=${1:-build}
[[ -x $build/flashcore ]] || { echo "pack_gpu_bin.sh: no $build/flashcore (build first)" >&2; exit 1; }
# The folder is replaced whole: refuse one that is not an earlier pack.
if [[ -d $out && -n $(ls -A "$out") && ! -f $out/PACKED ]]; then
  echo "pack_gpu_bin.sh: $out exists and is not a folder this script made (no PACKED); not replacing it" >&2
  exit 1
fi
rm -rf "$out" && mkdir -p "$out"
exes=()
for f in "$build/flashcore" "$build/tests/gpu/fc_gpu_tests" "$build"/fc_bench_* "$build/tools/fc_soak"; do
  [[ -x $f ]] && { strip -o "$out/$(basename "$f")" "$f"; exes+=("$f"); }
done
for lib in libspdlog.so.1.10 libfmt.so.9 libsentencepiece.so.0; do
  path=$(ldd "${exes[@]}" 2>/dev/null | awk -v lib="$lib" '$1 == lib && $3 ~ /^\//  && !found { print $3; found = 1 }')
  if [[ -n $path ]]; then cp -L "$path" "$out/"; else echo "note: $lib: not linked by these executables"; fi
done
echo "build $build, commit $(git describe --always --dirty 2>/dev/null || echo unknown), packed $(date -u '+%F %T') UTC" \
  > "$out/PACKED"
ls "$out"
du -sh "$out"
