#!/usr/bin/env bash
# Regenerates the committed test checkpoints and reference logits under tests/data/models with
# scripts/make_reference.py (needs torch + transformers: run it on the GPU machine).
#   scripts/make_fixtures.sh [OUT_DIR [NAME...]]   (default tests/data/models, every fixture)
# Every reference carries transformers' bf16 logits too (logits_bf16, --bf16-logits): `flashcore validate
# --device cuda` judges the engine against HF bf16's own error on those positions (docs/VALIDATION.md).
# Weights are drawn on the CPU from fixed seeds, so a rerun rewrites the same checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,7p' "$0"; exit 0; }
out=${1:-tests/data/models}
shift || true
only=" $* "
mkdir -p "$out"
wanted() { [[ "$only" == "  " || "$only" == *" $1 "* ]]; }
gen() {  # name tokens seed [extra args]
  local name=$1 tokens=$2 seed=$3; shift 3
  wanted "$name" || return 0
  rm -rf "${out:?}/$name"
  python3 scripts/make_reference.py --config "scripts/fixtures/$name.json" --model "$out/$name" \
    --out "$out/$name/reference.safetensors" --tokens "$tokens" --seed "$seed" --bf16-logits "$@"
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
# FP8 (compressed-tensors "float-quantized") checkpoints, issue 16: reference logits from transformers in fp32
# on the dequantized weights. Per-tensor weights + static input_scale with F32 scales (untied); per-channel
# weights + dynamic per-token activations with BF16 scales (tied embeddings). head_dim 64, every dimension a
# multiple of 64 (FP8 GEMM and 16-byte GEMV loads), odd prompt lengths.
gen tiny-llama3-fp8-static 65 6 --fp8 tensor-static --fp8-scale-dtype float32
gen tiny-llama32-fp8-dynamic 57 7 --fp8 channel-dynamic --fp8-scale-dtype bfloat16
# The generate tests' checkpoint (mini_b tokenizer, golden greedy ids; tests/apps/test_cli_generate.cpp).
# Where it exists only its reference is rewritten (same ids: --seed 4 draws them), so the golden file made
# from its weights stays valid; a fresh OUT_DIR gets the whole recipe.
if wanted tiny-llama3-bpe; then
  bpe=$out/tiny-llama3-bpe
  if [[ -f $bpe/model.safetensors && -f $bpe/tokenizer.json && -f $bpe/generate.golden.json ]]; then
    python3 scripts/make_reference.py --model "$bpe" --out "$bpe/reference.safetensors" --tokens 40 --seed 4 \
      --device cpu --bf16-logits
  else
    gen tiny-llama3-bpe 40 4 --device cpu
    cp tests/data/tokenizer/mini_b.tokenizer.json "$bpe/tokenizer.json"
    python3 scripts/make_generate_golden.py --model "$bpe" --out "$bpe/generate.golden.json"
  fi
fi
du -sh "$out"/*
