#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): the chained GEMV
# (kernels/gemv_chain.cuh) in one call. Its tests and the other GEMV tests, validate --device cuda on every
# fixture, fc_bench_gemv's step graph (chain vs one kernel per GEMV), then batch-1 decode with the chain
# (default) and with --no-gemv-chain, alternating twice; each step under a hard timeout, logs in OUT_DIR.
#   scripts/gpu_chain.sh OUT_DIR [TEST_FILTER (default "[gemv]")] [--no-graph-bench]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; filter=${2:-[gemv]}; graph_bench=1
[[ "${3:-}" == --no-graph-bench ]] && graph_bench=0
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s)
timeout -s KILL 200 $b/fc_gpu_tests "$filter" > "$out/gpu_tests.log" 2>&1
summary+=("gpu tests $filter: rc=$? $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1) ($(( $(date +%s) - t0 )) s)")
validate_fixtures "$out"
if ((graph_bench)); then
  timeout -s KILL 120 $b/fc_bench_gemv graph > "$out/bench_gemv_graph.txt" 2>&1
  summary+=("fc_bench_gemv graph: rc=$?")
fi
args="--prompt-len 16 --context 0,1024,8192 --batch 1 --gen-len 48 --warmup 1 --iters 2"
for run in 1 2; do
  for variant in default --no-gemv-chain; do
    extra=""; [[ $variant != default ]] && extra=$variant
    f="$out/bench_${variant#--}_$run.txt"
    echo "flashcore bench --synthetic llama-3.1-8b $args $extra" > "$f"
    timeout -s KILL 100 $b/flashcore bench --synthetic llama-3.1-8b $args $extra >> "$f" 2>&1
    summary+=("bench $variant #$run: rc=$? $(decode_p50 "$f")")
  done
done
(cd "$out" && tar czf ../chain_logs.tgz . && mv ../chain_logs.tgz .)
if ((graph_bench)); then
  echo "================ fc_bench_gemv graph ================"
  grep -v "^$" "$out/bench_gemv_graph.txt" | tail -32
fi
grep -h "copy bandwidth" "$out"/bench_default_1.txt
echo "================ summary ================"
cat "$out/gpu.txt"
printf '%s\n' "${summary[@]}"
