#!/usr/bin/env bash
# Build machine: unpack the Debian -dev packages FlashCore builds against into .deps/ (git-ignored), so
# the GPU machine (no network, no -dev packages) can build the project: carry .deps with the call.
#   scripts/gpu_deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == "--help" ]] && { sed -n '2,4p' "$0"; exit 0; }
[[ -f .deps/.done ]] && exit 0
pkgs=(libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10
      libfmt-dev libfmt9 catch2 libpcre2-dev libpcre2-8-0)
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download -qq "${pkgs[@]}")
mkdir -p .deps
for f in "$tmp"/*.deb; do dpkg -x "$f" .deps; done
rm -rf "$tmp" .deps/usr/share/doc .deps/usr/share/man
touch .deps/.done
du -sh .deps
