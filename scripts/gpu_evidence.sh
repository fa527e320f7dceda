#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): every GPU test, validate
# --device cuda on every fixture and the soak (scripts/gpu_reliability.sh without the sanitizers), then the
# issue-6 benchmark with its ablation, each under a hard timeout with its log in OUT_DIR. Summary last.
#   scripts/gpu_evidence.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
scripts/gpu_reliability.sh "$out" 0 > "$out/reliability.txt" 2>&1
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2 --ablate"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 300 .gpubin/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
bench_rc=$?
echo "================ summary ================"
grep -A30 "^batch" "$out/bench.txt" | head -20
sed -n '/summary/,$p' "$out/reliability.txt" | tail -n +2
echo "bench: rc=$bench_rc"
