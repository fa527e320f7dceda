#!/usr/bin/env bash
# GPU machine, with binaries from scripts/pack_gpu_bin.sh (carry .gpubin): issue 7's evidence. Every GPU
# test, validate --device cuda on every fixture, the soak twice (row buckets on, and the exact-rows control
# that shows what the buckets fix), then compute-sanitizer memcheck, racecheck and initcheck over the
# whole GPU suite (less the [memory] test, whose 1 PiB allocation the sanitizer reports as an error by
# design), in parallel parts. Each step under a hard timeout, its log in OUT_DIR; summary last.
#   scripts/gpu_reliability.sh OUT_DIR [SANITIZE_SECONDS (0: none)] [--sanitize-only]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
out=${1:?OUT_DIR}; sanitize_s=${2:-300}; only_sanitize=${3:-}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
b=.gpubin
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
if [[ $only_sanitize != --sanitize-only ]]; then
t0=$(date +%s)
timeout -s KILL 240 $b/fc_gpu_tests > "$out/gpu_tests.log" 2>&1
summary+=("gpu tests: rc=$? $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1) ($(( $(date +%s) - t0 )) s)")
validate_fixtures "$out"
# Nothing else may use the GPU during a soak: its GPU figure is device-wide (cudaMemGetInfo).
timeout -s KILL 150 $b/fc_soak --config configs/llama-3.2-1b.json > "$out/soak.txt" 2>&1
summary+=("soak: rc=$? $(grep '^prefill sweep' "$out/soak.txt")" "      $(tail -1 "$out/soak.txt")")
timeout -s KILL 150 $b/fc_soak --config configs/llama-3.2-1b.json --exact-gemm-rows > "$out/soak_exact_rows.txt" 2>&1
summary+=("soak --exact-gemm-rows: rc=$? $(grep '^prefill sweep' "$out/soak_exact_rows.txt")" "      $(tail -1 "$out/soak_exact_rows.txt")")
fi
if ((sanitize_s > 0)) && command -v compute-sanitizer > /dev/null; then
  # Each tool over the suite in parts (by tag), all runs at once: the GPU has room, and a tool on the
  # whole suite in one process takes many minutes.
  groups=("[attention]" "[gemv][quick]" "[gemv]~[quick]" "[gather],[attention_generic]" "[elementwise]"
          "[sampling]~[timing]" "[sampling][timing]" "[gemm]")
  # racecheck leaves out [gemm]: those tests run only cuBLASLt's kernels, in which racecheck reports
  # shared-memory hazards (nvjet_sm90_*, seen 2026-12-01, CUDA 13.0) that are not ours to fix or check,
  # and excluding those kernels by name (--kernel-name-exclude) made the sanitizer itself fail.
  # SANITIZE_GROUPS="[a];[b]" and SANITIZE_TOOLS="racecheck initcheck" narrow a rerun.
  [[ -n ${SANITIZE_GROUPS:-} ]] && IFS=';' read -ra groups <<< "$SANITIZE_GROUPS"
  tools=${SANITIZE_TOOLS:-memcheck racecheck initcheck}
  for tool in $tools; do
    for g in "${!groups[@]}"; do
      [[ $tool == racecheck && ${groups[$g]} == "[gemm]" ]] && continue
      ( t=$(date +%s)
        timeout -s KILL "$sanitize_s" compute-sanitizer --tool $tool --error-exitcode 9 $b/fc_gpu_tests "${groups[$g]}" \
          > "$out/sanitize_${tool}_$g.log" 2>&1
        echo "rc=$? $(( $(date +%s) - t )) s" > "$out/sanitize_${tool}_$g.rc" ) &
    done
  done
  wait
  for tool in $tools; do
    for g in "${!groups[@]}"; do
      [[ -f $out/sanitize_${tool}_$g.rc ]] || continue
      summary+=("$tool ${groups[$g]}: $(cat "$out/sanitize_${tool}_$g.rc") $(grep -E 'ERROR SUMMARY' "$out/sanitize_${tool}_$g.log" | tail -1) $(grep -E 'test cases|All tests passed' "$out/sanitize_${tool}_$g.log" | tail -1)")
    done
  done
else
  summary+=("compute-sanitizer: not run")
fi
(cd "$out" && tar czf ../sanitize_logs.tgz sanitize_* 2>/dev/null && rm -f sanitize_*)
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
