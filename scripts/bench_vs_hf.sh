#!/usr/bin/env bash
# On the GPU machine: flashcore bench --synthetic and scripts/bench_hf.py (eager, then static cache +
# torch.compile) on the same model shape, then scripts/bench_compare.py -> table.md and decode.png.
#   scripts/bench_vs_hf.sh OUT_DIR [MODEL]       (MODEL: llama-3.1-8b (default), llama-3.2-1b, llama-3.2-3b)
# Env: FLASHCORE (default build-gpu/flashcore), CONTEXTS (0,8192,32768), PROMPTS (128,512,2048),
#      BATCHES (1,8,32), GEN (128), T_OURS/T_EAGER/T_COMPILE (timeouts in s; each JSON is written as it goes).
set -uo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" || $# -lt 1 ]] && { sed -n '2,6p' "$0"; exit 0; }
out=$1; model=${2:-llama-3.1-8b}; mkdir -p "$out"
bin=${FLASHCORE:-build-gpu/flashcore}
ctx=${CONTEXTS:-0,8192,32768}; prompts=${PROMPTS:-128,512,2048}; gen=${GEN:-128}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
echo "+ $bin bench --synthetic $model --prompt-len $prompts --context $ctx --batch ${BATCHES:-1,8,32} --gen-len $gen" \
  | tee "$out/ours.txt"
timeout "${T_OURS:-150}" "$bin" bench --synthetic "$model" --prompt-len "$prompts" --context "$ctx" \
  --batch "${BATCHES:-1,8,32}" --gen-len "$gen" --json "$out/ours.json" 2>&1 | tee -a "$out/ours.txt"
timeout "${T_EAGER:-120}" python3 scripts/bench_hf.py --config "configs/$model.json" --modes eager \
  --prompt-len "$prompts" --context "$ctx" --gen-len "$gen" --json "$out/hf_eager.json" 2>&1 | tee "$out/hf_eager.txt"
# Prefill is eager in both HF modes (see bench_hf.py), so the compile run times decode only.
timeout "${T_COMPILE:-200}" python3 scripts/bench_hf.py --config "configs/$model.json" --modes compile \
  --prompt-len "" --context "$ctx" --gen-len "$gen" --json "$out/hf_compile.json" 2>&1 | tee "$out/hf_compile.txt"
python3 scripts/bench_compare.py --ours "$out/ours.json" --hf "$out/hf_eager.json" "$out/hf_compile.json" \
  --md "$out/table.md" --png "$out/decode.png"
cat "$out/table.md"
