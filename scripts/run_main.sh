#!/usr/bin/env bash
# Installs dependencies, builds FlashCore and runs its main job on an embedded default:
# with a GPU, the bundled checkpoints validated on the CUDA path and the synthetic LLaMA 3.1 8B benchmark;
# without one, the bundled tiny checkpoints through the CPU reference path (flashcore validate against
# Hugging Face transformers' logits).
#   scripts/run_main.sh [BUILD_DIR]        (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,5p' "$0"; exit 0; }
build=${1:-build}
scripts/setup.sh --no-tokenizer
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FC_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target flashcore
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  # GPU: validate the bundled checkpoints on the CUDA path, then the synthetic LLaMA 3.1 8B benchmark
  # (random weights drawn on the GPU; no files, no download).
  for model in tests/data/models/*/; do
    "$build"/flashcore validate --model "$model" --reference "$model/reference.safetensors" --device cuda
  done
  "$build"/flashcore bench --synthetic llama-3.1-8b
else
  for model in tests/data/models/*/; do
    "$build"/flashcore validate --model "$model" --reference "$model/reference.safetensors" --device cpu
  done
fi
