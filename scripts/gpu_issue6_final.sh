#!/usr/bin/env bash
# GPU machine (carry .gpubin): issue 6's evidence after a GEMV change, in one call. The GEMV and attention
# tests, validate --device cuda on every fixture, the full decode/prefill table, an A/B of the default
# per-projection GEMV kernels against registers only (alternating, twice), the random LLaMA 3.1 8B
# validation against HF (scripts/gpu_8b_hf.sh's steps) and HF static cache + torch.compile; each step
# under a hard timeout, logs in OUT_DIR (tarred), summary last.
#   scripts/gpu_issue6_final.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
b=.gpubin; s=()
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s)
timeout -s KILL 150 $b/fc_gpu_tests "[gemv],[attention]" > "$out/tests.log" 2>&1
s+=("tests [gemv],[attention]: rc=$? $(grep -E 'test cases|All tests passed' "$out/tests.log" | tail -1) ($(( $(date +%s) - t0 )) s)")
for m in tests/data/models/*/; do
  n=$(basename "$m")
  timeout -s KILL 60 $b/flashcore validate --model "$m" --reference "$m/reference.safetensors" --device cuda > "$out/validate_$n.log" 2>&1
  s+=("validate cuda $n: rc=$? $(grep -E '^(prefill|decode)' "$out/validate_$n.log" | awk '{print $1": rel "$3" top1 "$5}' | tr '\n' ' ')")
done
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 120 $b/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
s+=("bench: rc=$?")
ab="--prompt-len 16 --context 0,1024,8192 --batch 1 --gen-len 48 --warmup 1 --iters 2"
for i in 1 2; do
  for v in default reg; do
    extra=""; [[ $v == reg ]] && extra="--no-bulk-gemv"
    timeout -s KILL 60 $b/flashcore bench --synthetic llama-3.1-8b $ab $extra > "$out/ab_${v}_$i.txt" 2>&1
    s+=("A/B $v #$i: $(awk '$1 == 1 && NF >= 10 {printf "%s (%s)  ", $3, $10}' "$out/ab_${v}_$i.txt")")
  done
done
timeout -s KILL 150 python3 scripts/make_reference.py --config configs/llama-3.1-8b.json --model /tmp/llama8b \
  --out /tmp/ref8b.safetensors --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits --create-device cuda \
  > "$out/ref8b.log" 2>&1
s+=("8b reference: rc=$?")
timeout -s KILL 60 $b/flashcore validate --model /tmp/llama8b --reference /tmp/ref8b.safetensors --device cuda \
  --max-rel-err 0.08 --dump-logits /tmp/dump8b.safetensors > "$out/validate_8b.log" 2>&1
s+=("8b validate (--max-rel-err 0.08): rc=$? $(grep -E '^(prefill|decode)' "$out/validate_8b.log" | tr '\n' ' ')")
timeout -s KILL 60 python3 scripts/compare_8b.py --reference /tmp/ref8b.safetensors --engine /tmp/dump8b.safetensors \
  > "$out/compare_8b.log" 2>&1
s+=("8b vs HF bf16: rc=$?")
rm -rf /tmp/llama8b /tmp/ref8b.safetensors /tmp/dump8b.safetensors
timeout -s KILL 170 python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile --prompt-len "" \
  --context 0,8192,32768 --gen-len 32 --json "$out/hf_compile.json" > "$out/hf_compile.txt" 2>&1
s+=("hf compile: rc=$?")
(cd "$out" && tar czf ../issue6_logs.tgz . && mv ../issue6_logs.tgz .)
echo "================ summary ================"
grep -A16 "^batch" "$out/bench.txt" | head -16; grep -B1 -A4 "^prompt" "$out/bench.txt" | head -6
tail -6 "$out/compare_8b.log"; tail -5 "$out/hf_compile.txt"
printf '%s\n' "${s[@]}"
