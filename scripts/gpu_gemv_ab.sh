#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): the GEMV kernel's evidence in
# one call. The GEMV tests, fc_bench_gemv (every launch shape, per projection and one step's weights),
# validate --device cuda on every fixture, then the issue-6 decode table with the default GEMV and with
# the register kernel (--no-bulk-gemv), each step under a hard timeout, its log in OUT_DIR; summary last.
#   scripts/gpu_gemv_ab.sh OUT_DIR [TEST_FILTER (default "[gemv]")]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; filter=${2:-[gemv]}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
run_gpu_tests "$out" "$filter"
validate_fixtures "$out"
timeout -s KILL 240 $b/fc_bench_gemv > "$out/bench_gemv.txt" 2>&1
summary+=("fc_bench_gemv: rc=$?")
args="--prompt-len 512 --context 0,1024,8192,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2"
for variant in default --no-bulk-gemv; do
  extra=""; [[ $variant != default ]] && extra=$variant
  echo "flashcore bench --synthetic llama-3.1-8b $args $extra" > "$out/bench_$variant.txt"
  timeout -s KILL 150 $b/flashcore bench --synthetic llama-3.1-8b $args $extra >> "$out/bench_$variant.txt" 2>&1
  summary+=("bench $variant: rc=$?")
done
(cd "$out" && tar czf ../gemv_ab_logs.tgz . && mv ../gemv_ab_logs.tgz .)
echo "================ fc_bench_gemv ================"
cat "$out/bench_gemv.txt" | grep -v "^$" | tail -40
for variant in default --no-bulk-gemv; do
  echo "================ bench $variant ================"
  grep -A8 "^batch" "$out/bench_$variant.txt" | head -10; grep "copy bandwidth" "$out/bench_$variant.txt"
done
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
