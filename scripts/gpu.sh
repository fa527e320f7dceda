#!/usr/bin/env bash
# GPU machine: FlashCore's GPU checks and measurements over prebuilt binaries (a folder made on the build
# machine by scripts/pack_gpu_bin.sh and carried along). Each step runs under `timeout -s KILL`, writes its
# full log under OUT and adds a line to a short summary table printed last; a failing step never stops the
# ones after it. Exit status 0 only when every step's rc was 0.
set -uo pipefail

usage() {  # usage [SUBCOMMAND]
  case ${1:-} in
    test) cat <<'EOF'
scripts/gpu.sh test [FILTER]
  fc_gpu_tests (Catch2; FILTER as Catch2 takes it, e.g. "[gemv],[attention]"; default: the whole suite)
  under a hard limit of T_TEST s. Log: OUT/test.log. Summary: rc, test cases passed/failed, seconds.
EOF
    ;;
    validate) cat <<'EOF'
scripts/gpu.sh validate
  flashcore validate --device cuda on every fixture under tests/data/models that has reference.safetensors
  (T_VALIDATE s each). Logs: OUT/validate_NAME.log. Summary per fixture: rc, prefill/decode relative error,
  top-1 agreement and ok/FAIL as validate printed them.
EOF
    ;;
    bench) cat <<'EOF'
scripts/gpu.sh bench [BENCH ARGS]
  flashcore bench --synthetic llama-3.1-8b BENCH ARGS --json OUT/bench_N.json (T_BENCH s per run; no
  --synthetic is added when BENCH ARGS give --model or --synthetic). Without BENCH ARGS, the standard rows
  in two runs:
    --prompt-len 512,2048 --context 0,8192,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2
    --prompt-len 16 --context 4096 --batch 8,32 --gen-len 48 --warmup 1 --iters 2   (its prefill row unused)
  Summary per row: decode p50 ms/step and % of the bandwidth floor; prefill p50 ms and TFLOP/s.
EOF
    ;;
    ab) cat <<'EOF'
scripts/gpu.sh ab OLD_BIN NEW_BIN [ROUNDS]
  No-regression A/B of two binary folders (each made by scripts/pack_gpu_bin.sh --out DIR): ROUNDS
  rounds (default 2), each the old folder then the new one, of the standard bench rows (see bench --help:
  batch-1 decode at context 0, 8192, 32768; batch 8 and 32 at context 4096; prefill 512 and 2048). Each
  folder runs with its own LD_LIBRARY_PATH. JSON and logs: OUT/ab/. Prints a table: row, old p50 (min over
  rounds), new p50 (min), new/old, spread (largest (max-min)/min of either side) and ok / REGRESSION
  (new/old > 1 + AB_THRESHOLD_PCT/100; default 1%); rc 1 on any REGRESSION or missing row.
EOF
    ;;
    sanitize) cat <<'EOF'
scripts/gpu.sh sanitize [--tools memcheck,racecheck] [--jobs N] [FILTER]
  compute-sanitizer over fc_gpu_tests, one tool after the other (memcheck, racecheck, initcheck or
  synccheck; default memcheck,racecheck). FILTER applies to every tool; without it memcheck runs
  "~[memory]" (the whole suite but the out-of-memory test, whose intended failed 1 PiB cudaMalloc the tool
  reports as an error) and racecheck "~[memory]~[gemm]" (the [gemm] tests run only cuBLASLt kernels, in
  which racecheck reports shared-memory hazards that are not ours to fix). The matching test cases are
  split into N parts (default 8) run at once, T_SANITIZE s each. Logs: OUT/sanitize_TOOL/. Summary per
  tool: rc, errors (memcheck: "ERROR SUMMARY: N errors") or hazards (racecheck: "RACECHECK SUMMARY: N
  hazards displayed"), test cases passed/failed, parts without a summary line (killed at the limit).
EOF
    ;;
    soak) cat <<'EOF'
scripts/gpu.sh soak [SECONDS] [FC_SOAK ARGS]
  fc_soak (tools/soak_main.cpp): sequences through the CUDA backend with GPU memory and host RSS sampled
  after each; PASS when nothing grows after the warm-up. It runs a fixed number of sequences (--sequences,
  default 40); SECONDS is the hard limit (default T_SOAK). Default FC_SOAK ARGS: --config llama-3.2-1b
  (a shape built into the binary, or a config.json path; 1b / 3b / 8b are short for the built-in names).
  Others: --sequences N --tokens N --max-context N ... (fc_soak --help).
  Nothing else may use the GPU meanwhile (its GPU figure is device-wide). Log: OUT/soak.log.
EOF
    ;;
    profile) cat <<'EOF'
scripts/gpu.sh profile [BENCH ARGS]
  nsys profile (CUDA + NVTX trace) of flashcore bench --synthetic llama-3.1-8b BENCH ARGS (default: a short
  run: --prompt-len 512 --context 0,8192 --batch 1 --gen-len 16 --warmup 1 --iters 1), then nsys stats'
  GPU kernel summary, with FC_NVTX=1 (NVTX ranges per step, layer and op family; decode launches eagerly).
  Report: OUT/profile/bench.nsys-rep; kernel table: OUT/profile_stats.txt. Says so
  when nsys is not on PATH.
EOF
    ;;
    compare-hf) cat <<'EOF'
scripts/gpu.sh compare-hf
  The random LLaMA 3.1 8B against HF transformers: scripts/make_reference.py makes the checkpoint (random
  weights, std 0.02, on the GPU) and HF's fp32 + bf16 logits for 512 tokens in a temporary folder (about
  16 GB, under TMPDIR, deleted afterwards); flashcore validate --device cuda --max-rel-err 0.08
  --dump-logits; scripts/compare_8b.py: our bf16 error against HF's own bf16 error. Then HF's decode timing
  on the same GPU: scripts/bench_hf.py --modes compile (static cache + torch.compile), contexts 0, 8192,
  32768, 32 steps. Logs: OUT/hf_reference_8b.log, validate_8b.log, compare_8b.log, hf_compile.{log,json}.
EOF
    ;;
    pending) cat <<'EOF'
scripts/gpu.sh pending
  The GPU paths written but not yet verified (engine/gpu_pending.h: the one-launch sampler, FP8 on CUDA),
  turned on with FC_GPU_PENDING=1, beside the verified ones, in one call:
    fc_gpu_tests (whole suite) with FC_GPU_PENDING=1; fc_bench_sampling;
    bench 8B batch 1 at context 0 and 8192, greedy and T 0.6 / top-p 0.9, with and without the switch;
    bench 8B --quantize fp8 (prefill 2048; batch 1 at context 0, 1024, 32768; batch 8 and 32 at 4096);
    validate --quantize fp8 --device cuda on every fixture;
    the FP8 fixtures made (scripts/make_fixtures.sh: needs torch >= 2.1 and transformers, as on the GPU
    machine) into OUT/fp8_fixtures, then validated there with --device cpu and --device cuda.
  Logs: OUT/pending_*.log, JSON OUT/pending_bench_*.json. Summary rows name the sampler of each decode row.
  Bring OUT/fp8_fixtures back to commit them under tests/data/models.
EOF
    ;;
    all) cat <<'EOF'
scripts/gpu.sh all
  test (the whole suite), validate, bench (the standard rows), in that order.
EOF
    ;;
    *) cat <<'EOF'
usage: scripts/gpu.sh [--bin DIR] [--out DIR] SUBCOMMAND [ARGS]     (from the repo root, on the GPU machine)
  --bin DIR   the binaries and the .so files they need (default .gpubin; made on the build machine by
              scripts/pack_gpu_bin.sh BUILD_DIR), put first on LD_LIBRARY_PATH; a build tree works too
  --out DIR   full logs, JSON and summary.txt (default $OUT, else ./out)
subcommands:
  test [FILTER]                 fc_gpu_tests (default: the whole suite)
  validate                      flashcore validate --device cuda on every fixture under tests/data/models
  bench [BENCH ARGS]            flashcore bench --synthetic llama-3.1-8b (default: the standard rows)
  ab OLD_BIN NEW_BIN [ROUNDS]   no-regression A/B of two binary folders over the standard bench rows
  sanitize [--tools T,T] [--jobs N] [FILTER]
                                compute-sanitizer memcheck, then racecheck, over fc_gpu_tests
  soak [SECONDS] [FC_SOAK ARGS] fc_soak: GPU memory and host RSS flat over many sequences
  profile [BENCH ARGS]          nsys profile of a short bench run
  compare-hf                    random LLaMA 3.1 8B vs HF transformers (logits), and HF's compiled decode
  pending                       the not-yet-verified GPU paths (FC_GPU_PENDING=1): tests and measurements
  all                           test, validate, bench
scripts/gpu.sh SUBCOMMAND --help tells more. A summary table is printed last (and appended to
OUT/summary.txt); exit status 0 only when every step's rc is 0.
Hard limits in seconds, from the environment: T_TEST=300 T_VALIDATE=120 (each fixture) T_BENCH=300 (each
run) T_SANITIZE=480 (each part) T_SOAK=300 T_PROFILE=300 T_REF=400 T_VALIDATE_8B=300 T_COMPARE=200 T_HF=400.
EOF
    ;;
  esac
}

: "${T_TEST:=300}" "${T_VALIDATE:=120}" "${T_BENCH:=300}" "${T_SANITIZE:=480}" "${T_SOAK:=300}"
: "${T_PROFILE:=300}" "${T_REF:=400}" "${T_VALIDATE_8B:=300}" "${T_COMPARE:=200}" "${T_HF:=400}"
: "${AB_THRESHOLD_PCT:=1}"

caller_dir=$PWD
abspath() { if [[ $1 == /* ]]; then echo "$1"; else echo "$caller_dir/$1"; fi; }
cd "$(dirname "$0")/.." || exit 2

bin=$PWD/.gpubin
out=$(abspath "${OUT:-out}")
while (($#)); do
  case $1 in
    --bin) bin=$(abspath "${2:?--bin DIR}"); shift 2 ;;
    --out) out=$(abspath "${2:?--out DIR}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($#)) || { usage >&2; exit 2; }
command=$1; shift
case $command in
  test|validate|bench|ab|sanitize|soak|profile|compare-hf|pending|all) ;;
  *) echo "gpu.sh: unknown subcommand '$command' (see --help)" >&2; exit 2 ;;
esac
for a in "$@"; do [[ $a == --help || $a == -h ]] && { usage "$command"; exit 0; }; done
[[ $command != ab ]] || { (($# >= 2)) && [[ ${3:-2} =~ ^[1-9][0-9]*$ ]]; } || { usage ab >&2; exit 2; }

mkdir -p "$out"
ld_base=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$bin${ld_base:+:$ld_base} PYTHONUNBUFFERED=1

# ---- steps and the summary ------------------------------------------------------------------------------

summary=()
status=0
note() {  # note STEP RC SECONDS TEXT: one line of the summary table
  summary+=("$(printf '%-32s %4s %6s  %s' "$1" "$2" "$3" "$4")")
  [[ $2 == 0 || -z $2 ]] || status=1
}

# run LIMIT_S LOG CMD...: CMD under a hard limit, its output in LOG after a line naming it; sets rc, secs.
run() {
  local limit=$1 log=$2 t0=$SECONDS; shift 2
  echo "+ $* (limit $limit s)" > "$log"
  # (the braces' 2>/dev/null keeps bash's "Killed" job notice off the terminal: the log says it)
  { timeout -s KILL "$limit" "$@" >> "$log" 2>&1; } 2> /dev/null
  rc=$?
  secs=$((SECONDS - t0))
  ((rc == 137)) && echo "killed after $secs s (limit $limit s, or out of memory)" >> "$log"
  return 0
}

# need NAME [DIR]: sets exe to the executable NAME in DIR (default: the binaries' folder), else adds a
# summary line. A build tree works too (scripts/gpu_build.sh's build-gpu: tests/gpu/ and tools/ below it).
need() {
  local d=${2:-$bin}
  for exe in "$d/$1" "$d/tests/gpu/$1" "$d/tools/$1"; do [[ -x $exe ]] && return 0; done
  note "$1" 127 0 "missing: $d/$1 (scripts/pack_gpu_bin.sh on the build machine)"
  return 1
}

# Catch2's totals line as "N passed, M failed" (or what stopped it).
catch_counts() {  # catch_counts LOG...
  awk '
    /^SKIPPED: GPU tests need/ { skipped = 1 }
    /^All tests passed/ { for (i = 1; i <= NF; i++) if ($i ~ /^case/) pass += $(i - 2); found = 1 }
    /^test cases:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) pass += $(i - 1); if ($i ~ /^failed/) fail += $(i - 1) }
                     found = 1 }
    END { if (found) printf "%d passed, %d failed", pass, fail; else if (skipped) printf "skipped: no GPU";
          else printf "no Catch2 totals line" }' "$@"
}

# ---- subcommands -------------------------------------------------------------------------------------------

cmd_test() {
  need fc_gpu_tests || return 0
  echo "== test ${1:-(whole suite)}: $out/test.log"
  run "$T_TEST" "$out/test.log" "$exe" ${1:+"$1"}
  note "test${1:+ $1}" "$rc" "$secs" "$(catch_counts "$out/test.log")"
}

# validate's result rows (path max_abs rel_err min_cos top1_agree mean_KL ok|FAIL) on one line.
validate_rows() {  # validate_rows LOG
  awk '$1 == "prefill" || $1 == "decode" { printf "%s%s rel %s top1 %s %s", sep, $1, $3, $5, $7; sep = "; " }' "$1"
}

cmd_validate() {
  need flashcore || return 0
  local m name log rows
  for m in tests/data/models/*/; do
    m=${m%/}; name=$(basename "$m")
    [[ -f $m/reference.safetensors ]] || continue
    log=$out/validate_$name.log
    echo "== validate $name: $log"
    run "$T_VALIDATE" "$log" "$exe" validate --model "$m" --reference "$m/reference.safetensors" --device cuda
    rows=$(validate_rows "$log")
    note "validate $name" "$rc" "$secs" "${rows:-no result rows (see the log)}"
  done
}

# One summary row per measurement of `flashcore bench --json` files: "NAME<TAB>TEXT". The keys are the
# ones apps/cmd_bench.cpp writes; a missing key or file prints a row saying so instead of failing.
bench_rows() {  # bench_rows all|decode JSON...
  python3 - "$@" <<'EOF'
import json, sys
what, paths = sys.argv[1], sys.argv[2:]
num = lambda v, f: format(v, f) if isinstance(v, (int, float)) else "?"
for path in paths:
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        print(f"bench\tno JSON: {path} ({type(e).__name__})")
        continue
    if what == "all":
        for r in j.get("prefill") or []:
            print(f"prefill {r.get('prompt_len')}\tp50 {num(r.get('ttft_ms_p50'), '.2f')} ms, "
                  f"{num(r.get('tflops'), '.0f')} TFLOP/s")
    for r in j.get("decode") or []:
        sampler = "" if r.get("sampler", "greedy") == "greedy" else f" {r.get('sampler')}"
        vs = f", {100 * (r['vs_greedy'] - 1):+.1f}% vs greedy" if isinstance(r.get("vs_greedy"), float) else ""
        print(f"decode b{r.get('batch')}/ctx{r.get('context')}{sampler}\tp50 {num(r.get('ms_per_step_p50'), '.3f')} ms, "
              f"{num(r.get('roofline_pct'), '.1f')}% of floor{vs}")
    for r in j.get("skipped") or []:
        print(f"decode b{r.get('batch')}/ctx{r.get('context')}\tskipped: {r.get('why')}")
EOF
}

# shellcheck disable=SC2054  # the commas are the values' own (bench takes lists)
bench_a=(--prompt-len 512,2048 --context 0,8192,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2)
# shellcheck disable=SC2054
bench_b=(--prompt-len 16 --context 4096 --batch 8,32 --gen-len 48 --warmup 1 --iters 2)

# bench_run DIR LOG JSON ARGS...: one flashcore bench run of the binaries in DIR (with DIR's .so files).
bench_run() {
  local dir=$1 log=$2 json=$3 a model=(--synthetic llama-3.1-8b); shift 3
  for a in "$@"; do [[ $a == --model* || $a == --synthetic* ]] && model=(); done
  rm -f "$json"  # a crashed run must not leave an earlier run's rows to be read as its own
  run "$T_BENCH" "$log" env LD_LIBRARY_PATH="$dir${ld_base:+:$ld_base}" "$dir/flashcore" bench "${model[@]}" "$@" \
    --json "$json"
}

# bench_one N all|decode ARGS...: run N of `bench`, its rows (all, or decode rows only) in the summary.
bench_one() {
  local i=$1 what=$2 name text; shift 2
  echo "== bench $i: $*: $out/bench_$i.log"
  bench_run "$bin" "$out/bench_$i.log" "$out/bench_$i.json" "$@"
  note "bench $i" "$rc" "$secs" "$*"
  while IFS=$'\t' read -r name text; do note "  $name" "" "" "$text"; done < <(bench_rows "$what" "$out/bench_$i.json")
}

cmd_bench() {
  need flashcore || return 0
  if (($#)); then
    bench_one 1 all "$@"
  else
    bench_one 1 all "${bench_a[@]}"
    bench_one 2 decode "${bench_b[@]}"  # its 16-token prefill only sizes the run: no row for it
  fi
}

cmd_ab() {
  local old new rounds=${3:-2} r side dir part fails=0 runs=0 args=() t0=$SECONDS
  old=$(abspath "$1"); new=$(abspath "$2")
  need flashcore "$old" && need flashcore "$new" || return 0
  bins_text="old $old, new $new"
  rm -rf "$out/ab" && mkdir -p "$out/ab"
  for dir in "$old" "$new"; do
    [[ -f $dir/PACKED ]] && echo "$(basename "$dir"): $(head -1 "$dir/PACKED")"
  done | tee "$out/ab/folders.txt"
  for ((r = 1; r <= rounds; r++)); do
    for side in old new; do
      [[ $side == old ]] && dir=$old || dir=$new
      for part in a b; do
        echo "== ab round $r, $side ($dir), run $part"
        if [[ $part == a ]]; then args=("${bench_a[@]}"); else args=("${bench_b[@]}"); fi
        bench_run "$dir" "$out/ab/${side}_r${r}_$part.log" "$out/ab/${side}_r${r}_$part.json" "${args[@]}"
        runs=$((runs + 1)); ((rc == 0)) || fails=$((fails + 1))
      done
    done
  done
  note "ab bench runs" "$((fails > 0))" "$((SECONDS - t0))" "$((runs - fails)) of $runs ok (logs in $out/ab)"
  python3 - "$out/ab" "$AB_THRESHOLD_PCT" > "$out/ab/table.txt" <<'EOF'
import glob, json, os, sys
folder, threshold = sys.argv[1], float(sys.argv[2])
# (row name, JSON list, how a row of that list is matched, the p50 key)
rows = [(f"prefill {n}", "prefill", lambda r, n=n: r.get("prompt_len") == n, "ttft_ms_p50") for n in (512, 2048)]
rows += [(f"decode b{b}/ctx{c}", "decode", lambda r, b=b, c=c: (r.get("batch"), r.get("context")) == (b, c),
          "ms_per_step_p50") for b, c in ((1, 0), (1, 8192), (1, 32768), (8, 4096), (32, 4096))]
def samples(side):
    found = {name: [] for name, *_ in rows}
    for path in sorted(glob.glob(os.path.join(folder, f"{side}_r*_*.json"))):
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, ValueError):
            continue
        for name, key, match, p50 in rows:
            for r in j.get(key) or []:
                if match(r) and isinstance(r.get(p50), (int, float)):
                    found[name].append(r[p50])
    return found
old, new = samples("old"), samples("new")
bad = 0
print(f"{'row':<18} {'old p50 ms':>10} {'new p50 ms':>10} {'new/old':>8} {'spread':>7}  (min over rounds; "
      f"REGRESSION above {1 + threshold / 100:.3f})")
for name, *_ in rows:
    o, n = old[name], new[name]
    if not o or not n:
        bad += 1
        print(f"{name:<18} {'missing in ' + ('old' if not o else 'new'):>30}")
        continue
    ratio = min(n) / min(o)
    spread = max((max(v) - min(v)) / min(v) for v in (o, n))
    verdict = "ok" if ratio <= 1 + threshold / 100 else "REGRESSION"
    bad += verdict != "ok"
    print(f"{name:<18} {min(o):10.3f} {min(n):10.3f} {ratio:8.3f} {100 * spread:6.1f}%  {verdict}")
sys.exit(1 if bad else 0)
EOF
  rc=$?
  ab_table=$out/ab/table.txt
  note "ab, rounds: $rounds" "$rc" "" "$(grep -c ' REGRESSION$' "$ab_table") REGRESSION, $(grep -c ' missing in ' "$ab_table") missing of 7 rows (table above)"
}

cmd_sanitize() {
  local tools=memcheck,racecheck jobs=8 filter="" tool f dir p n t0 errors parts=()
  while (($#)); do
    case $1 in
      --tools) tools=${2:?--tools T,T}; shift 2 ;;
      --jobs) jobs=${2:?--jobs N}; shift 2 ;;
      *) filter=$1; shift ;;
    esac
  done
  command -v compute-sanitizer > /dev/null || { note sanitize 127 0 "compute-sanitizer is not on PATH"; return 0; }
  need fc_gpu_tests || return 0
  for tool in ${tools//,/ }; do
    f=$filter
    [[ -z $f ]] && { f="~[memory]"; [[ $tool == racecheck ]] && f="~[memory]~[gemm]"; }
    dir=$out/sanitize_$tool
    rm -rf "$dir" && mkdir -p "$dir"
    # The matching test cases, dealt round-robin into parts; in Catch2's input file a name's commas,
    # brackets and backslashes need a backslash.
    { timeout -s KILL 120 "$exe" --list-test-names-only "$f" > "$dir/names.txt" 2>&1; } 2> /dev/null
    n=$(grep -c . "$dir/names.txt")
    if grep -q '^SKIPPED' "$dir/names.txt" || ((n == 0)); then
      note "sanitize $tool" 1 0 "nothing run: $(grep -m1 '^SKIPPED' "$dir/names.txt" || echo "no test case matches '$f'")"
      continue
    fi
    awk -v parts="$jobs" -v dir="$dir" '{ gsub(/[],[\\]/, "\\\\&"); print > (dir "/part_" (NR - 1) % parts ".txt") }' \
      "$dir/names.txt"
    parts=("$dir"/part_*.txt)
    echo "== sanitize $tool '$f': $n test cases in ${#parts[@]} parts, logs in $dir"
    t0=$SECONDS
    for p in "${parts[@]}"; do
      ( run "$T_SANITIZE" "${p%.txt}.log" compute-sanitizer --tool "$tool" --error-exitcode 9 \
          "$exe" --input-file "$p"
        echo "$rc" > "${p%.txt}.rc" ) &
    done
    wait
    rc=$(cat "$dir"/part_*.rc | sort -n | tail -1)
    # "========= ERROR SUMMARY: N errors"; racecheck's "========= RACECHECK SUMMARY: N hazards displayed".
    errors=$(cat "$dir"/part_*.log | awk '/ RACECHECK SUMMARY: / { h += $4; race = 1 } / ERROR SUMMARY: / { e += $4 }
      END { if (race) print h " hazards, " e " errors"; else print e " errors" }')
    local quiet=0
    for p in "$dir"/part_*.log; do grep -q 'SUMMARY:' "$p" || quiet=$((quiet + 1)); done
    note "sanitize $tool" "$rc" "$((SECONDS - t0))" \
      "$errors; $(catch_counts "$dir"/part_*.log); $quiet parts without a summary line"
  done
}

cmd_soak() {
  need fc_soak || return 0
  local limit=$T_SOAK args=() a
  [[ ${1:-} =~ ^[0-9]+$ ]] && { limit=$1; shift; }
  (($#)) || set -- --config llama-3.2-1b
  while (($#)); do
    a=$1; shift
    if [[ $a == --config && $# -gt 0 ]]; then
      case $1 in 8b) a=llama-3.1-8b ;; 3b) a=llama-3.2-3b ;; 1b) a=llama-3.2-1b ;; *) a=$1 ;; esac
      args+=(--config "$a"); shift
    else
      args+=("$a")
    fi
  done
  echo "== soak ${args[*]} (limit $limit s): $out/soak.log"
  run "$limit" "$out/soak.log" "$exe" "${args[@]}"
  note "soak" "$rc" "$secs" "$(tail -1 "$out/soak.log" | sed 's/^soak: //')"
}

cmd_profile() {
  command -v nsys > /dev/null || { note profile 127 0 "nsys is not on PATH: nothing profiled"; return 0; }
  need flashcore || return 0
  local args=("$@") rep=$out/profile/bench.nsys-rep
  # shellcheck disable=SC2054
  ((${#args[@]})) || args=(--prompt-len 512 --context 0,8192 --batch 1 --gen-len 16 --warmup 1 --iters 1)
  mkdir -p "$out/profile"
  echo "== profile: nsys profile flashcore bench ${args[*]}: $out/profile.log"
  FC_NVTX=1 run "$T_PROFILE" "$out/profile.log" nsys profile --force-overwrite true --trace cuda,nvtx --sample none \
    --cpuctxsw none -o "${rep%.nsys-rep}" "$exe" bench --synthetic llama-3.1-8b "${args[@]}"
  if [[ ! -f $rep ]]; then note profile "$rc" "$secs" "no report written (see profile.log)"; return 0; fi
  note profile "$rc" "$secs" "report: $rep"
  # cuda_gpu_kern_sum is the report's name since nsys 2023; gpukernsum before.
  run 300 "$out/profile_stats.txt" nsys stats --report cuda_gpu_kern_sum "$rep"
  ((rc == 0)) || run 300 "$out/profile_stats.txt" nsys stats --report gpukernsum "$rep"
  note "  nsys stats" "$rc" "$secs" "GPU kernel summary: $out/profile_stats.txt"
}

scratch=""
trap '[[ -n $scratch ]] && rm -rf "$scratch"' EXIT
cmd_compare_hf() {
  need flashcore || return 0
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/fc-8b.XXXXXX")
  local ref=$scratch/ref8b.safetensors dump=$scratch/dump8b.safetensors ckpt=$scratch/llama8b
  echo "== compare-hf: random LLaMA 3.1 8B in $scratch; logs in $out"
  run "$T_REF" "$out/hf_reference_8b.log" python3 scripts/make_reference.py --config configs/llama-3.1-8b.json \
    --model "$ckpt" --out "$ref" --tokens 512 --init-std 0.02 --shard-size 5GB --bf16-logits --create-device cuda
  note "8b reference (HF fp32)" "$rc" "$secs" "$(tail -1 "$out/hf_reference_8b.log" | cut -c1-100)"
  if ((rc == 0)); then
    run "$T_VALIDATE_8B" "$out/validate_8b.log" "$exe" validate --model "$ckpt" --reference "$ref" \
      --device cuda --max-rel-err 0.08 --dump-logits "$dump"
    note "8b validate" "$rc" "$secs" "$(validate_rows "$out/validate_8b.log")"
    if [[ -f $dump ]]; then
      run "$T_COMPARE" "$out/compare_8b.log" python3 scripts/compare_8b.py --reference "$ref" --engine "$dump"
      # compare_8b's rows: "flashcore PATH rel kl top1 ratio rel Xx KL Yx ok|FAIL"
      note "8b vs HF bf16 error" "$rc" "$secs" \
        "$(awk '$1 == "flashcore" { printf "%s%s rel %s KL %s %s", sep, $2, $8, $10, $11; sep = "; " }' "$out/compare_8b.log")"
    else
      note "8b vs HF bf16 error" 1 0 "not run: validate wrote no --dump-logits file"
    fi
  fi
  rm -rf "$scratch"; scratch=""
  run "$T_HF" "$out/hf_compile.log" python3 scripts/bench_hf.py --config configs/llama-3.1-8b.json --modes compile \
    --prompt-len "" --context 0,8192,32768 --gen-len 32 --json "$out/hf_compile.json"
  note "HF static + compile" "$rc" "$secs" "$(python3 - "$out/hf_compile.json" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["modes"]["compile"]["decode"]
    print("; ".join(f"ctx{r['context']} p50 {r['ms_per_step_p50']:.3f} ms" for r in rows))
except (OSError, ValueError, KeyError, TypeError) as e:
    print(f"no decode rows ({type(e).__name__}; see hf_compile.log)")
EOF
)"
}

# The not-yet-verified GPU paths (engine/gpu_pending.h) under FC_GPU_PENDING=1, beside the verified ones.
cmd_pending() {
  need flashcore || return 0
  local flashcore=$exe m name log rows i=0 mode args
  if need fc_gpu_tests; then
    echo "== pending: fc_gpu_tests with FC_GPU_PENDING=1: $out/pending_test.log"
    run "$T_TEST" "$out/pending_test.log" env FC_GPU_PENDING=1 "$exe"
    note "pending test (whole suite)" "$rc" "$secs" "$(catch_counts "$out/pending_test.log")"
  fi
  if need fc_bench_sampling; then
    run "$T_BENCH" "$out/pending_bench_sampling.log" env FC_GPU_PENDING=1 "$exe"
    note "pending fc_bench_sampling" "$rc" "$secs" "$out/pending_bench_sampling.log"
  fi
  # shellcheck disable=SC2054  # the commas are the values' own (bench takes lists)
  local -a sampled=(--prompt-len 16 --context 0,8192 --batch 1 --gen-len 64 --warmup 1 --iters 2 --temperature 0.6
                    --top-p 0.9)
  for mode in verified pending; do
    i=$((i + 1))
    echo "== pending: bench, sampler rows, $mode paths: $out/pending_bench_$i.log"
    [[ $mode == pending ]] && export FC_GPU_PENDING=1
    bench_run "$bin" "$out/pending_bench_$i.log" "$out/pending_bench_$i.json" "${sampled[@]}"
    unset FC_GPU_PENDING
    note "pending bench $i ($mode)" "$rc" "$secs" "${sampled[*]}"
    while IFS=$'\t' read -r name text; do note "  $name" "" "" "$text"; done \
      < <(bench_rows decode "$out/pending_bench_$i.json")
  done
  export FC_GPU_PENDING=1
  local -a fp8_runs=("--quantize fp8 --prompt-len 2048 --context 0,1024,32768 --batch 1 --gen-len 48 --warmup 1 --iters 2"
                     "--quantize fp8 --prompt-len 16 --context 4096 --batch 8,32 --gen-len 48 --warmup 1 --iters 2")
  for args in "${fp8_runs[@]}"; do
    i=$((i + 1))
    echo "== pending: bench $args: $out/pending_bench_$i.log"
    # shellcheck disable=SC2086  # the run's arguments, split on purpose
    bench_run "$bin" "$out/pending_bench_$i.log" "$out/pending_bench_$i.json" $args
    note "pending bench $i (fp8)" "$rc" "$secs" "$args"
    while IFS=$'\t' read -r name text; do note "  $name" "" "" "$text"; done \
      < <(bench_rows all "$out/pending_bench_$i.json")
  done
  for m in tests/data/models/*/; do
    m=${m%/}; name=$(basename "$m")
    [[ -f $m/reference.safetensors ]] || continue
    log=$out/pending_validate_fp8_$name.log
    run "$T_VALIDATE" "$log" "$flashcore" validate --model "$m" --reference "$m/reference.safetensors" --device cuda \
      --quantize fp8
    rows=$(validate_rows "$log")
    note "pending validate fp8 $name" "$rc" "$secs" "${rows:-no result rows (see the log)}"
  done
  local fixtures=$out/fp8_fixtures device
  run "$T_REF" "$out/pending_fp8_fixtures.log" bash scripts/make_fixtures.sh "$fixtures" tiny-llama3-fp8-static \
    tiny-llama32-fp8-dynamic
  note "pending make FP8 fixtures" "$rc" "$secs" "$fixtures"
  for m in "$fixtures"/*/; do
    m=${m%/}; name=$(basename "$m")
    [[ -f $m/reference.safetensors ]] || continue
    for device in cpu cuda; do
      log=$out/pending_validate_${name}_$device.log
      run "$T_VALIDATE" "$log" "$flashcore" validate --model "$m" --reference "$m/reference.safetensors" \
        --device "$device"
      rows=$(validate_rows "$log")
      note "pending validate $name $device" "$rc" "$secs" "${rows:-no result rows (see the log)}"
    done
  done
  unset FC_GPU_PENDING
}

# ---- main ---------------------------------------------------------------------------------------------------

gpu=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
echo "$gpu" > "$out/gpu.txt"
case $command in
  test) cmd_test "$@" ;;
  validate) cmd_validate ;;
  bench) cmd_bench "$@" ;;
  ab) cmd_ab "$@" ;;
  sanitize) cmd_sanitize "$@" ;;
  soak) cmd_soak "$@" ;;
  profile) cmd_profile "$@" ;;
  compare-hf) cmd_compare_hf ;;
  pending) cmd_pending ;;
  all) cmd_test; cmd_validate; cmd_bench ;;
esac

[[ -f ${ab_table:-} ]] && { echo "================ A/B: old $1, new $2 ================"; cat "$ab_table"; }
{
  echo "================ summary: gpu.sh $command${*:+ $*} ($(date -u '+%F %T') UTC) ================"
  echo "GPU: $gpu; binaries: ${bins_text:-$bin$([[ -f $bin/PACKED ]] && echo " ($(head -1 "$bin/PACKED"))")}; logs: $out"
  printf '%-32s %4s %6s  %s\n' step rc secs result
  ((${#summary[@]} == 0)) || printf '%s\n' "${summary[@]}"
} | tee -a "$out/summary.txt"
exit "$status"
