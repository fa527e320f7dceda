#!/usr/bin/env bash
# GPU machine (carry .gpubin): quick kernel tests, the final decode table, the random LLaMA 3.1 8B
# validation (HF fp32 reference, validate --device cuda, bf16 error budget vs HF) and HF transformers
# static cache + torch.compile decode on the same GPU; each step under a hard timeout, logs in OUT_DIR.
#   scripts/gpu_8b_hf.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpubin:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
b=.gpubin; s=()
timeout -s KILL 90 $b/fc_gpu_tests "[gemv],[attention]" > "$out/tests.log" 2>&1
s+=("tests [gemv],[attention]: rc=$? $(grep -E 'test cases|All tests passed' "$out/tests.log" | tail -1)")
args="--prompt-len 512,2048 --context 0,1024,4096,8192,32768 --batch 1,8,32 --gen-len 48 --warmup 1 --iters 2"
echo "flashcore bench --synthetic llama-3.1-8b $args" > "$out/bench.txt"
timeout -s KILL 120 $b/flashcore bench --synthetic llama-3.1-8b $args --json "$out/bench.json" >> "$out/bench.txt" 2>&1
s+=("bench: rc=$?")
timeout -s KILL 150 python3 scripts/make_reference.py --config configs/llama-3.1-8b.json --model /tmp/llama8b \
  --out /tmp/ref8b.safetensors --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits --create-device cuda \
  > "$out/ref8b.log" 2>&1
s+=("8b reference: rc=$?")
timeout -s KILL 60 $b/flashcore validate --model /tmp/llama8b --reference /tmp/ref8b.safetensors --device cuda \
  --max-rel-err 0.08 --dump-logits /tmp/dump8b.safetensors > "$out/validate_8b.log" 2>&1
s+=("8b validate (--max-rel-err 0.08): rc=$?")
timeout -s KILL 60 python3 scripts/compare_8b.py --reference /tmp/ref8b.safetensors --engine /tmp/dump8b.safetensors \
  > "$out/compare_8b.log" 2>&1
s+=("8b vs HF bf16: rc=$?")
timeout -s KILL 170 python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile --prompt-len "" \
  --context 0,8192,32768 --gen-len 32 --json "$out/hf_compile.json" > "$out/hf_compile.txt" 2>&1
s+=("hf compile: rc=$?")
echo "================ summary ================"
grep -A16 "^batch" "$out/bench.txt"; tail -4 "$out/validate_8b.log"; tail -6 "$out/compare_8b.log"; tail -5 "$out/hf_compile.txt"
printf '%s\n' "${s[@]}"
