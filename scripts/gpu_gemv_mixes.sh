#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): the batch-1 decode table with
# each per-projection GEMV kernel choice given (bench --gemv-kernels qkv,o_proj,gate_up,down,lm_head), in
# the order given (repeat one to see the run-to-run spread). Logs in OUT_DIR; summary last.
#   scripts/gpu_gemv_mixes.sh OUT_DIR MIX...      (MIX: e.g. reg,reg,warp,reg,cta)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; shift
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
args="--prompt-len 16 --context 0,1024,8192 --batch 1 --gen-len 48 --warmup 1 --iters 2"
i=0
for m in "$@"; do
  i=$((i + 1))
  timeout -s KILL 100 .gpubin/flashcore bench --synthetic llama-3.1-8b $args --gemv-kernels "$m" > "$out/mix_$i.txt" 2>&1
done
echo "================ decode p50 ms, batch 1 (context 0 / 1024 / 8192) ================"
i=0
for m in "$@"; do
  i=$((i + 1))
  printf '%-24s %s\n' "$m" "$(decode_p50 "$out/mix_$i.txt")"
done
