#!/usr/bin/env bash
# GPU machine: the decode fast path's checks and measurements (docs/PERFORMANCE.md), on binaries packed
# by scripts/pack_gpu_bin.sh (carry .gpubin) or built there (scripts/gpu_build.sh) when .gpubin is absent.
# Full logs and JSON go to OUT_DIR; a short summary is printed last.
#   scripts/gpu_perf.sh OUT_DIR [--tests FILTER] [--validate] [--8b] [--bench "ARGS"] [--ablate] [--hf]
#     --tests FILTER  fc_gpu_tests with this Catch2 filter ("" = all)
#     --validate      validate --device cuda on every fixture
#     --8b            random LLaMA 3.1 8B checkpoint (transformers, fp32 reference): validate --device cuda
#                     and the bf16 error budget vs HF (scripts/compare_8b.py)
#     --bench ARGS    flashcore bench --synthetic llama-3.1-8b ARGS --json OUT_DIR/bench.json
#     --hf            scripts/bench_hf.py static cache + torch.compile decode at the bench's contexts
set -uo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" || $# -lt 1 ]] && { sed -n '2,12p' "$0"; exit 0; }
out=$1; shift
tests=unset; do_validate=0; do_8b=0; bench_args=""; do_hf=0; hf_ctx=0,8192,32768
while (($#)); do
  case $1 in
    --tests) tests=$2; shift ;; --validate) do_validate=1 ;; --8b) do_8b=1 ;;
    --bench) bench_args=$2; shift ;; --hf) do_hf=1 ;; --hf-context) hf_ctx=$2; shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1
summary=()
note() { summary+=("$1"); echo "## $1"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
if [[ -x .gpubin/flashcore ]]; then
  bin=.gpubin; tests_bin=.gpubin/fc_gpu_tests
  export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-}
else
  start=$(date +%s)
  scripts/gpu_build.sh flashcore fc_gpu_tests > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  note "build: $(( $(date +%s) - start )) s"
  bin=build-gpu; tests_bin=build-gpu/tests/gpu/fc_gpu_tests
  export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi

if [[ $tests != unset ]]; then
  $tests_bin ${tests:+"$tests"} > "$out/gpu_tests.log" 2>&1
  note "gpu tests ${tests:-all}: rc=$? $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1)"
  grep -E '^\[' "$out/gpu_tests.log" | head -20
fi

if ((do_validate)); then
  for m in tests/data/models/*/; do
    name=$(basename "$m")
    $bin/flashcore validate --model "$m" --reference "$m/reference.safetensors" --device cuda > "$out/validate_$name.log" 2>&1
    note "validate cuda $name: rc=$? $(grep -E '^(prefill|decode)' "$out/validate_$name.log" | awk '{print $1": rel "$3" top1 "$5}' | tr '\n' ' ')"
  done
fi

if ((do_8b)); then
  python3 scripts/make_reference.py --config configs/llama-3.1-8b.json --model /tmp/llama8b \
    --out /tmp/ref8b.safetensors --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits \
    --create-device cuda > "$out/ref8b.log" 2>&1 || { note "8b reference: FAILED"; tail -20 "$out/ref8b.log"; }
  $bin/flashcore validate --model /tmp/llama8b --reference /tmp/ref8b.safetensors --device cuda \
    --max-rel-err 0.08 --dump-logits /tmp/dump8b.safetensors > "$out/validate_8b.log" 2>&1
  note "8b validate (rel-err bound 0.08: HF bf16 itself is at 0.095): rc=$?"
  grep -E '^(prefill|decode)' "$out/validate_8b.log"
  python3 scripts/compare_8b.py --reference /tmp/ref8b.safetensors --engine /tmp/dump8b.safetensors \
    > "$out/compare_8b.log" 2>&1
  note "8b error budget vs HF bf16: rc=$?"; tail -6 "$out/compare_8b.log"
fi

if [[ -n $bench_args ]]; then
  echo "+ $bin/flashcore bench --synthetic llama-3.1-8b $bench_args" | tee "$out/bench.txt"
  timeout 400 $bin/flashcore bench --synthetic llama-3.1-8b $bench_args --json "$out/bench.json" 2>&1 | tee -a "$out/bench.txt"
  note "bench: rc=${PIPESTATUS[0]}"
fi

if ((do_hf)); then
  timeout 300 python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile \
    --prompt-len "" --context "$hf_ctx" --gen-len 64 --json "$out/hf_compile.json" > "$out/hf_compile.txt" 2>&1
  note "hf compile: rc=$?"; tail -8 "$out/hf_compile.txt"
fi

echo "================ summary ================"
printf '%s\n' "${summary[@]}"
