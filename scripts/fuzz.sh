#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang-14 (+ASan+UBSan) into build-fuzz/ and runs each for a
# bounded time, seeded from the test fixtures; prints executions per target; exit 1 on any finding.
#   scripts/fuzz.sh [--seconds N (default 60) | --runs N] [--build DIR (default build-fuzz)] [TARGET...]
#   --runs N: exactly N inputs per target with a fixed seed: deterministic (what CI uses, so a CI result
#   never depends on machine speed or luck; exploratory runs use --seconds).
#   TARGETs: safetensors config tokenizer_json bpe_encode (default: all). Findings: DIR/findings/.
# A finding is minimized by hand and saved under fuzz/regressions/<target>/: the test suite replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
runs=0
build=build-fuzz
targets=()
while (($#)); do
  case "$1" in
    --help|-h) sed -n '2,8p' "$0"; exit 0 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    safetensors|config|tokenizer_json|bpe_encode) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(safetensors config tokenizer_json bpe_encode)
scripts/setup.sh --fuzz --no-tokenizer  # clang-14 + libclang-rt-14-dev (libFuzzer) when missing

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DFC_ENABLE_CUDA=OFF -DFC_BUILD_TESTS=OFF -DFC_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

# Seeds: the test fixtures each parser normally reads, plus fuzz/seeds/<target>/ and past findings.
seed() {  # seed TARGET FILES...
  local dir=$build/corpus/$1; shift
  mkdir -p "$dir"
  for f in "$@"; do [[ -f $f ]] && cp -n "$f" "$dir/seed-$(basename "$(dirname "$f")")-$(basename "$f")"; done
  return 0
}
models=tests/data/models
seed safetensors $models/*/reference.safetensors $models/tiny-llama2-mha-sharded/model-0000[1-5]-of-00005.safetensors \
  fuzz/seeds/safetensors/* fuzz/regressions/safetensors/*
seed config $models/*/config.json $models/*/generation_config.json configs/*.json scripts/fixtures/*.json \
  fuzz/seeds/config/* fuzz/regressions/config/*
seed tokenizer_json tests/data/tokenizer/mini_[ab].tokenizer.json fuzz/seeds/tokenizer_json/* \
  fuzz/regressions/tokenizer_json/*
seed bpe_encode tests/data/tokenizer/corpus.json fuzz/seeds/bpe_encode/* fuzz/regressions/bpe_encode/*

declare -A max_len=([safetensors]=65536 [config]=4096 [tokenizer_json]=32768 [bpe_encode]=4096)
mkdir -p "$build/findings" "$build/logs"
status=0
if ((runs > 0)); then limit=(-runs="$runs" -seed=1); seconds="-"; else limit=(-max_total_time="$seconds"); fi
printf '%-16s %8s %12s %10s %8s  %s\n' target seconds executions exec/s corpus result
for t in "${targets[@]}"; do
  log=$build/logs/$t.log
  rc=0
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz/fuzz_$t" "$build/corpus/$t" "${limit[@]}" -max_len="${max_len[$t]}" \
    -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$build/findings/$t-" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$build/corpus/$t" -type f | wc -l)
  result=ok
  if ((rc != 0)); then
    result="FINDING (exit $rc): $(grep -m1 -E 'ERROR|runtime error|terminate|abort' "$log" || echo "see $log")"
    status=1
  fi
  printf '%-16s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${speed:-?}" "$corpus" "$result"
done
((status == 0)) || { echo "fuzz.sh: findings under $build/findings/, logs under $build/logs/" >&2; }
exit $status
