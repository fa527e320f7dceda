# Shared steps of the GPU-machine scripts (sourced, not run). Each step runs under a hard timeout, writes
# its log under the directory given and appends one line to the caller's `summary` array.
#   b: the binaries' folder (.gpubin)

# The GPU tests matching a filter, under a hard timeout; log in OUT/gpu_tests.log.
run_gpu_tests() {
  local out=$1 filter=$2 t0 rc
  t0=$(date +%s)
  timeout -s KILL 200 $b/fc_gpu_tests "$filter" > "$out/gpu_tests.log" 2>&1
  rc=$?
  summary+=("gpu tests $filter: rc=$rc $(grep -E 'test cases|All tests passed' "$out/gpu_tests.log" | tail -1) ($(( $(date +%s) - t0 )) s)")
}

# validate --device cuda on every fixture under tests/data/models.
validate_fixtures() {
  local out=$1 m n
  for m in tests/data/models/*/; do
    n=$(basename "$m")
    timeout -s KILL 60 $b/flashcore validate --model "$m" --reference "$m/reference.safetensors" --device cuda \
      > "$out/validate_$n.log" 2>&1
    summary+=("validate cuda $n: rc=$? $(grep -E '^(prefill|decode)' "$out/validate_$n.log" | awk '{print $1": rel "$3" top1 "$5}' | tr '\n' ' ')")
  done
}

# The random LLaMA 3.1 8B checkpoint: HF fp32 reference, validate --device cuda, and the bf16 error budget
# against HF's own bf16 (scripts/compare_8b.py); the checkpoint is deleted afterwards.
validate_8b() {
  local out=$1
  timeout -s KILL 150 python3 scripts/make_reference.py --config configs/llama-3.1-8b.json --model /tmp/llama8b \
    --out /tmp/ref8b.safetensors --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits --create-device cuda \
    > "$out/ref8b.log" 2>&1
  summary+=("8b reference: rc=$?")
  timeout -s KILL 60 $b/flashcore validate --model /tmp/llama8b --reference /tmp/ref8b.safetensors --device cuda \
    --max-rel-err 0.08 --dump-logits /tmp/dump8b.safetensors > "$out/validate_8b.log" 2>&1
  summary+=("8b validate (--max-rel-err 0.08): rc=$? $(grep -E '^(prefill|decode)' "$out/validate_8b.log" | tr '\n' ' ')")
  timeout -s KILL 60 python3 scripts/compare_8b.py --reference /tmp/ref8b.safetensors --engine /tmp/dump8b.safetensors \
    > "$out/compare_8b.log" 2>&1
  summary+=("8b vs HF bf16: rc=$?")
  rm -rf /tmp/llama8b /tmp/ref8b.safetensors /tmp/dump8b.safetensors
}

# A bench log's batch-1 decode rows as "p50 (% of floor)" pairs on one line.
decode_p50() {
  awk '$1 == 1 && NF >= 10 {printf "%s (%s)  ", $3, $10}' "$1"
}

# Every decode row of a bench log as "bBATCH/CONTEXT p50 (% of floor)" on one line.
decode_rows() {
  awk '$1 ~ /^[0-9]+$/ && NF >= 10 {printf "b%s/%s %s (%s)  ", $1, $2, $3, $10}' "$1"
}
