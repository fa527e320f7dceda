#!/usr/bin/env bash
# GPU machine (carry .gpubin): quick kernel tests, the final decode table, the random LLaMA 3.1 8B
# validation (HF fp32 reference, validate --device cuda, bf16 error budget vs HF) and HF transformers
# static cache + torch.compile decode on the same GPU; each step under a hard timeout, logs in OUT_DIR.
#   scripts/gpu_8b_hf.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
b=.gpubin; summary=()
timeout -s KILL 90 $b/fc_gpu_tests "[gemv],[attention]" > "$out/tests.log" 2>&1
summary+=("tests [gemv],[attention]: rc=$? $(grep -E 'test cases|All tests passed' "$out/tests.log" | tail -1)")
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 120 $b/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
summary+=("bench: rc=$?")
validate_8b "$out"
timeout -s KILL 170 python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile --prompt-len "" \
  --context 0,8192,32768 --gen-len 32 --json "$out/hf_compile.json" > "$out/hf_compile.txt" 2>&1
summary+=("hf compile: rc=$?")
echo "================ summary ================"
grep -A16 "^batch" "$out/bench.txt"; tail -4 "$out/validate_8b.log"; tail -6 "$out/compare_8b.log"; tail -5 "$out/hf_compile.txt"
printf '%s\n' "${summary[@]}"
