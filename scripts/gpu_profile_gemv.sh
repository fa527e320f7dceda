#!/usr/bin/env bash
# GPU machine (Firecracker runtime: ncu reads counters there), binaries from scripts/pack_gpu_bin.sh: Nsight
# Compute on one launch of the decode GEMV per 8B shape (fc_bench_gemv SHAPE: M = 1, default tuning),
# clocks left alone. Reports in OUT_DIR/ncu_SHAPE.txt; the lines that matter printed last.
#   scripts/gpu_profile_gemv.sh OUT_DIR [SHAPES...]     (default: down o_proj gate_up qkv)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; shift
shapes=${*:-down o_proj gate_up qkv}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
for s in $shapes; do
  timeout -s KILL 90 ncu --clock-control none -k regex:gemv_kernel --launch-skip 40 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats \
    --section Occupancy --section SchedulerStats .gpubin/fc_bench_gemv "$s" > "$out/ncu_$s.txt" 2>&1
  echo "== $s: rc=$?"
  grep -E "^\s+(Duration|DRAM Throughput|Memory Throughput|L1/TEX Hit Rate|L2 Hit Rate|Achieved Occupancy|Registers Per Thread|Grid Size|Waves Per SM|Stall|One or More Eligible|Warp Cycles Per Issued)" "$out/ncu_$s.txt" | head -14
  grep -E "^\s+(down|o_proj|gate_up|qkv|lm_head) " "$out/ncu_$s.txt" | head -2
done
