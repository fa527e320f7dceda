#!/usr/bin/env bash
# Regenerates the committed test checkpoints and reference logits under tests/data/models with
# scripts/make_reference.py (needs torch + transformers: run it on the GPU machine).
#   scripts/make_fixtures.sh [OUT_DIR]      (default tests/data/models)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,4p' "$0"; exit 0; }
out=${1:-tests/data/models}
mkdir -p "$out"
gen() {  # name tokens seed [extra args]
  local name=$1 tokens=$2 seed=$3; shift 3
  rm -rf "${out:?}/$name"
  python3 scripts/make_reference.py --config "scripts/fixtures/$name.json" --model "$out/$name" \
    --out "$out/$name/reference.safetensors" --tokens "$tokens" --seed "$seed" "$@"
}
gen tiny-llama3-gqa 48 1
gen tiny-llama32-tied 37 2
gen tiny-llama2-mha-sharded 33 3 --shard-size 60KB
du -sh "$out"/*
