#!/usr/bin/env bash
# Installs dependencies, builds FlashCore and runs its main job on an embedded default:
# with a GPU, the CUDA path; without one, the bundled tiny checkpoints through the CPU reference path
# (flashcore validate against Hugging Face transformers' logits).
#   scripts/run_main.sh [BUILD_DIR]        (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,5p' "$0"; exit 0; }
build=${1:-build}
scripts/setup.sh --no-tokenizer
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FC_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target flashcore
device=cpu
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then device=cuda; fi
for model in tests/data/models/*/; do
  "$build"/flashcore validate --model "$model" --reference "$model/reference.safetensors" --device "$device"
done
