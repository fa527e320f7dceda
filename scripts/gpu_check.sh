#!/usr/bin/env bash
# GPU machine: build, run the GPU tests, validate --device cuda on every fixture, and optionally the
# random LLaMA 3.1 8B error budget, kernel benchmarks, compute-sanitizer (memcheck, racecheck, initcheck)
# and the memory soak (build-gpu/tools/fc_soak; SOAK_ARGS="--config 8b" for the 8B shape). Full logs go to
# OUT_DIR; a short summary table is printed last.
#   scripts/gpu_check.sh OUT_DIR [--8b] [--bench] [--sanitize] [--soak] [--tests FILTER]
set -uo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" || $# -lt 1 ]] && { sed -n '2,6p' "$0"; exit 0; }
out=$1; shift
do_8b=0; do_bench=0; do_sanitize=0; do_soak=0; filter=""
while (($#)); do
  case $1 in
    --8b) do_8b=1 ;; --bench) do_bench=1 ;; --sanitize) do_sanitize=1 ;; --soak) do_soak=1 ;;
    --tests) filter=$2; shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
summary=()
note() { summary+=("$1"); }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"

start=$(date +%s)
if scripts/gpu_build.sh > "$out/build.log" 2>&1; then note "build: ok ($(( $(date +%s) - start )) s)"
else note "build: FAILED (see build.log)"; tail -30 "$out/build.log"; printf '%s\n' "${summary[@]}"; exit 1; fi
bin=build-gpu

build-gpu/tests/gpu/fc_gpu_tests ${filter:+"$filter"} > "$out/gpu_tests.log" 2>&1
note "gpu tests: rc=$? $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1)"

for m in tests/data/models/*/; do
  name=$(basename "$m")
  $bin/flashcore validate --model "$m" --reference "$m/reference.safetensors" --device cuda > "$out/validate_$name.log" 2>&1
  rc=$?
  note "validate cuda $name: rc=$rc $(grep -E '^(prefill|decode)' "$out/validate_$name.log" | awk '{print $1": rel "$3" cos "$4" top1 "$5}' | tr '\n' ' ')"
done

if ((do_8b)); then
  t0=$(date +%s)
  python3 scripts/make_reference.py --config configs/llama-3.1-8b.json --model /tmp/llama8b \
    --out /tmp/ref8b.safetensors --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits \
    --create-device cuda > "$out/ref8b.log" 2>&1 || { note "8b reference: FAILED"; tail -20 "$out/ref8b.log"; }
  t1=$(date +%s)
  $bin/flashcore validate --model /tmp/llama8b --reference /tmp/ref8b.safetensors --device cuda \
    --dump-logits /tmp/dump8b.safetensors > "$out/validate_8b.log" 2>&1
  note "8b validate (vs fp32, default cuda tolerance): rc=$? ref ${t1}-${t0}s"
  python3 scripts/compare_8b.py --reference /tmp/ref8b.safetensors --engine /tmp/dump8b.safetensors \
    > "$out/compare_8b.log" 2>&1
  note "8b error budget vs HF bf16: rc=$?"
  if [[ -f .cache/llama3_1/tokenizer.json ]]; then
    cp .cache/llama3_1/tokenizer.json .cache/llama3_1/tokenizer_config.json /tmp/llama8b/
    $bin/flashcore generate --model /tmp/llama8b --prompt "The capital of France is" --max-new-tokens 64 \
      --temperature 0 --device cuda > "$out/generate_8b.log" 2>&1
    note "8b generate (greedy, random weights): rc=$? $(tail -1 "$out/generate_8b.log")"
  fi
fi

if ((do_bench)); then
  for b in $bin/fc_bench_*; do
    [[ -x $b ]] || continue
    timeout 120 "$b" > "$out/$(basename "$b").log" 2>&1; note "$(basename "$b"): rc=$?"
  done
  [[ -f scripts/bench_attention_torch.py ]] && timeout 120 python3 scripts/bench_attention_torch.py \
    > "$out/bench_attention_torch.log" 2>&1
fi

if ((do_sanitize)); then
  for tool in memcheck racecheck initcheck; do
    timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 build-gpu/tests/gpu/fc_gpu_tests "[quick],[sanitize],[elementwise]" \
      > "$out/sanitize_$tool.log" 2>&1
    note "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY' "$out/sanitize_$tool.log" | tail -1)"
  done
fi

if ((do_soak)); then
  # Flat GPU memory and host RSS over 40 sequences (2000+ tokens after the warm-up); the last line says
  # PASS or FAIL with the figures.
  timeout 900 $bin/tools/fc_soak ${SOAK_ARGS:-} > "$out/soak.log" 2>&1
  note "soak: rc=$? $(tail -1 "$out/soak.log")"
fi

echo "================ summary ================"
for f in "$out"/validate_*.log "$out"/compare_8b.log; do [[ -f $f ]] && { echo "--- $(basename "$f")"; tail -4 "$f"; }; done
printf '%s\n' "${summary[@]}"
