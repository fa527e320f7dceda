#!/usr/bin/env bash
# Checks the install and the Debian package of a finished build, without a GPU (a few seconds): installs to
# a fresh prefix, runs the installed flashcore from / (--version, --help, an unknown --synthetic name must
# list the built-in shapes), builds the .deb into a temporary folder and checks what it holds and depends on.
#   scripts/check_install.sh [BUILD_DIR]     (default: build; flashcore must be built there)
set -euo pipefail
me=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
case ${1:-} in -h|--help) sed -n '2,5p' "$me"; exit 0 ;; esac
build=$(cd "${1:-build}" && pwd)
[[ -x $build/flashcore ]] || { echo "check_install.sh: no $build/flashcore (build it first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_install.sh: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
bin=$tmp/prefix/bin/flashcore
[[ -x $bin ]] || fail "no bin/flashcore under the prefix"
for name in llama-3.1-8b llama-3.2-1b llama-3.2-3b; do
  [[ -f $tmp/prefix/share/flashcore/configs/$name.json ]] || fail "no share/flashcore/configs/$name.json"
done
(cd / && "$bin" --version) | grep -q '^flashcore ' || fail "installed flashcore --version"
(cd / && "$bin" --help) | grep -q 'bench' || fail "installed flashcore --help"
err=$(cd / && "$bin" bench --synthetic no-such-shape 2>&1 >/dev/null) && fail "unknown --synthetic name accepted"
grep -q 'built in: llama-3.1-70b, llama-3.1-8b, llama-3.2-1b, llama-3.2-3b' <<<"$err" || fail "unknown --synthetic name: '$err'"
echo "install: ok ($("$bin" --version | head -1))"

(cd "$tmp" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/deb" >/dev/null)
deb=$(ls "$tmp"/deb/flashcore_*_*.deb 2>/dev/null | head -1)
[[ -n $deb ]] || fail "cpack made no flashcore_VERSION_ARCH.deb"
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/flashcore ./usr/share/flashcore/configs/llama-3.1-8b.json; do
  grep -q " $path\$" <<<"$contents" || fail "$(basename "$deb") lacks $path"
done
depends=$(dpkg-deb -f "$deb" Depends)
for pkg in libsentencepiece0 libpcre2-8-0 libstdc++6; do
  grep -q "\b$pkg\b" <<<"$depends" || fail "$(basename "$deb") Depends lacks $pkg: '$depends'"
done
echo "package: ok ($(basename "$deb"); Depends: $depends)"
