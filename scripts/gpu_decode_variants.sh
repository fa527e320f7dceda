#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): decode-step variants of the GEMV
# path in one call. The GEMV tests (chained GEMV included), validate --device cuda on every fixture,
# fc_bench_gemv's step graph (one step's weights: L2 prefetch sizes, the chained kernel, the per-kernel
# tunings), then batch-1 decode under each variant's bench flags, all variants twice in alternation; each
# step under a hard timeout, logs in OUT_DIR; summary last.
#   scripts/gpu_decode_variants.sh OUT_DIR [TEST_FILTER (default "[gemv]")] [VARIANT...]
#   VARIANT: bench flags in one word, commas for spaces ("--gemv-prefetch,0"), or "+" for spaces where a
#   value holds commas ("--gemv-kernels+warp,reg,warp,reg,reg"), or "default"
#   env BENCH_ARGS: the bench's shape flags (default batch 1, contexts 0,1024,8192); GRAPH_BENCH=0 skips
#   fc_bench_gemv; GRAPH_MODE: its mode (graph, default; or timeline)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; filter=${2:-[gemv]}
shift $(( $# >= 2 ? 2 : $# ))
variants=("$@"); ((${#variants[@]})) || variants=(default --gemv-chain)
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
run_gpu_tests "$out" "$filter"
validate_fixtures "$out"
if [[ ${GRAPH_BENCH:-1} != 0 ]]; then
  timeout -s KILL 150 $b/fc_bench_gemv ${GRAPH_MODE:-graph} > "$out/bench_gemv_graph.txt" 2>&1
  summary+=("fc_bench_gemv ${GRAPH_MODE:-graph}: rc=$?")
fi
args=${BENCH_ARGS:-"--prompt-len 16 --context 0,1024,8192 --batch 1 --gen-len 48 --warmup 1 --iters 2"}
for run in 1 2; do
  for v in "${variants[@]}"; do
    extra=""
    if [[ $v == *+* ]]; then extra=${v//+/ }; elif [[ $v != default ]]; then extra=${v//,/ }; fi
    f="$out/bench_${v//[^a-z0-9]/_}_$run.txt"
    echo "flashcore bench --synthetic llama-3.1-8b $args $extra" > "$f"
    timeout -s KILL 100 $b/flashcore bench --synthetic llama-3.1-8b $args $extra >> "$f" 2>&1
    summary+=("bench $v #$run: rc=$? $(decode_rows "$f")")
  done
done
(cd "$out" && tar czf ../variant_logs.tgz . && mv ../variant_logs.tgz .)
if [[ ${GRAPH_BENCH:-1} != 0 ]]; then
  echo "================ fc_bench_gemv ${GRAPH_MODE:-graph} ================"
  if [[ ${GRAPH_MODE:-graph} == timeline ]]; then
    sed -n '/^one step/,/^$/p' "$out/bench_gemv_graph.txt" | head -14
    grep -E "^timeline|^(proj|qkv|o_proj|gate_up|down|lm_head) |^sum" "$out/bench_gemv_graph.txt" | cut -c1-110 | head -60
  else
    grep -E "prefetch|chain|warp s3c2 |floor" "$out/bench_gemv_graph.txt" | head -16
  fi
fi
grep -h "copy bandwidth" "$out"/bench_default_1.txt 2>/dev/null
echo "================ summary ================"
cat "$out/gpu.txt"
printf '%s\n' "${summary[@]}"
