#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): fc_bench_gemv's one-step graph
# (part (b)) and the batch-1 decode table under each GEMV launch shape given (bench --gemv-tuning), to
# choose the default. Each step under a hard timeout; logs in OUT_DIR; summary last.
#   scripts/gpu_gemv_tunings.sh OUT_DIR TUNING...     (TUNING: reg|warp|cta[,slots[,ctas[,late]]])
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; shift
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
timeout -s KILL 150 $b/fc_bench_gemv graph > "$out/graph.txt" 2>&1
args="--prompt-len 512 --context 0,1024,8192,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2"
for t in "$@"; do
  timeout -s KILL 100 $b/flashcore bench --synthetic llama-3.1-8b $args --gemv-tuning "$t" > "$out/bench_$t.txt" 2>&1
done
echo "================ fc_bench_gemv graph ================"
grep -v "^$" "$out/graph.txt"
echo "================ decode p50 ms (context 0 / 1024 / 8192 / 32768) ================"
for t in "$@"; do
  printf '%-16s %s\n' "$t" "$(decode_p50 "$out/bench_$t.txt")"
done
