#!/usr/bin/env bash
# GPU machine (carry .gpubin): issue 6's evidence after a GEMV change, in one call. The GEMV and attention
# tests (the chained GEMV's included), validate --device cuda on every fixture, the full decode/prefill
# table, the ablation (batch 1), an A/B of the default against AB_FLAGS (default: the decode attention's
# old split count, --attn-ctas-per-sm 0; alternating, twice), the random LLaMA 3.1 8B validation against
# HF (scripts/gpu_8b_hf.sh's steps) and HF static cache + torch.compile; each step under a hard timeout,
# logs in OUT_DIR (tarred), summary last.
#   scripts/gpu_issue6_final.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
b=.gpubin; summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s)
timeout -s KILL 150 $b/fc_gpu_tests "[gemv],[attention]" > "$out/tests.log" 2>&1
summary+=("tests [gemv],[attention]: rc=$? $(grep -E 'test cases|All tests passed' "$out/tests.log" | tail -1) ($(( $(date +%s) - t0 )) s)")
validate_fixtures "$out"
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 120 $b/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
summary+=("bench: rc=$?")
abl="--prompt-len 16 --context 1024,8192,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2 --ablate"
timeout -s KILL 150 $b/flashcore bench --synthetic llama-3.1-8b $abl > "$out/ablate.txt" 2>&1
summary+=("ablate: rc=$?")
ab="--prompt-len 16 --context 0,4096,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2"
for i in 1 2; do
  for v in default other; do
    extra=""; [[ $v == other ]] && extra=${AB_FLAGS:-"--attn-ctas-per-sm 0"}
    timeout -s KILL 60 $b/flashcore bench --synthetic llama-3.1-8b $ab $extra > "$out/ab_${v}_$i.txt" 2>&1
    summary+=("A/B $v #$i: $(decode_p50 "$out/ab_${v}_$i.txt")")
  done
done
validate_8b "$out"
timeout -s KILL 170 python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile --prompt-len "" \
  --context 0,8192,32768 --gen-len 32 --json "$out/hf_compile.json" > "$out/hf_compile.txt" 2>&1
summary+=("hf compile: rc=$?")
(cd "$out" && tar czf ../issue6_logs.tgz . && mv ../issue6_logs.tgz .)
echo "================ summary ================"
grep -A16 "^batch" "$out/bench.txt" | head -16; grep -B1 -A4 "^prompt" "$out/bench.txt" | head -6
grep -A12 -i "ablation" "$out/ablate.txt" | head -14
tail -6 "$out/compare_8b.log"; tail -5 "$out/hf_compile.txt"
printf '%s\n' "${summary[@]}"
