#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): every GPU test, validate
# --device cuda on every fixture, the soak, and the issue-6 benchmark with its ablation, each under a
# hard timeout with its log in OUT_DIR (so a hang costs one step, not the call). Summary last.
#   scripts/gpu_evidence.sh OUT_DIR [TESTS_FILTER]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; filter=${2:-}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
timeout -s KILL 200 $b/fc_gpu_tests ${filter:+"$filter"} > "$out/gpu_tests.log" 2>&1
summary+=("gpu tests: rc=$? $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1)")
for m in tests/data/models/*/; do
  n=$(basename "$m")
  timeout -s KILL 60 $b/flashcore validate --model "$m" --reference "$m/reference.safetensors" --device cuda > "$out/validate_$n.log" 2>&1
  summary+=("validate cuda $n: rc=$? $(grep -E '^(prefill|decode)' "$out/validate_$n.log" | awk '{print $1": rel "$3" top1 "$5}' | tr '\n' ' ')")
done
timeout -s KILL 90 $b/fc_soak --config configs/llama-3.2-1b.json > "$out/soak.txt" 2>&1
summary+=("soak: rc=$? $(tail -1 "$out/soak.txt")")
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2 --ablate"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 300 $b/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
summary+=("bench: rc=$?")
echo "================ summary ================"
grep -A30 "^batch" "$out/bench.txt" | head -20
printf '%s\n' "${summary[@]}"
