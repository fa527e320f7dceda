#!/usr/bin/env bash
# Regenerates the committed test checkpoints and reference logits under tests/data/models with
# scripts/make_reference.py (needs torch + transformers: run it on the GPU machine).
#   scripts/make_fixtures.sh [OUT_DIR [NAME...]]   (default tests/data/models, every fixture)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,4p' "$0"; exit 0; }
out=${1:-tests/data/models}
shift || true
only=" $* "
mkdir -p "$out"
gen() {  # name tokens seed [extra args]
  local name=$1 tokens=$2 seed=$3; shift 3
  [[ "$only" == "  " || "$only" == *" $name "* ]] || return 0
  rm -rf "${out:?}/$name"
  python3 scripts/make_reference.py --config "scripts/fixtures/$name.json" --model "$out/$name" \
    --out "$out/$name/reference.safetensors" --tokens "$tokens" --seed "$seed" "$@"
}
gen tiny-llama3-gqa 48 1
gen tiny-llama32-tied 37 2
gen tiny-llama2-mha-sharded 33 3 --shard-size 60KB
# The tensor-core attention's head dims (64: GQA, bf16; 128: MQA, tied, fp16), long enough for several KV
# blocks and a split-KV decode of 2-3 splits (a split holds at least 128 keys); every dimension a multiple
# of 8, so decode takes the fused GEMV step; under 2 MB each. Weights drawn with std 0.05: a projection's
# gain std * sqrt(hidden) is then 0.8, as for the fixtures above (0.1 * sqrt(72..128) = 0.85..1.1) and a
# trained model; the default 0.1 would grow the activations 1.6x a projection at hidden 256.
gen tiny-llama3-hd64 300 4 --init-std 0.05
gen tiny-llama3-hd128 280 5 --init-std 0.05
du -sh "$out"/*
