#!/usr/bin/env bash
# Build llama.cpp's C++ server (`llama-server`) once and keep it in a cache outside the checkout.
#
#   bash scripts/build_llama_server.sh        # prints the binary's path on stdout (progress on stderr)
#
# The source is the one llama-cpp-python==0.3.36 (the project's `engine` extra) vendors: the same
# llama.cpp as the Python server in the tests. pip fetches the sdist (its cache makes that a copy);
# cmake configures vendor/llama.cpp for a portable CPU-only Release build (GGML_NATIVE=OFF, static
# libraries, no HTTPS, no web UI, no tests/examples) and builds only the `llama-server` target.
#
# Cache: $OLLAMA_LOCUST_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/ollama-locust)
#        /llama-server-0.3.36/llama-server. A binary already there (and answering --version) is reused.
# Exit status non-zero, with the tail of the build log, when anything fails.
set -euo pipefail

VERSION=0.3.36
CACHE_ROOT="${OLLAMA_LOCUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-locust}"
DEST="$CACHE_ROOT/llama-server-$VERSION"
BIN="$DEST/llama-server"

say() { echo "build_llama_server: $*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

for tool in cmake c++ cc tar; do
  command -v "$tool" >/dev/null 2>&1 || { say "'$tool' is missing (needed to build llama-server)"; exit 1; }
done

mkdir -p "$DEST"
# One build at a time (two test runs starting together): the second waits, then finds the binary.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST/.lock"
  flock 9
  if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
  fi
fi
WORK="$(mktemp -d "$DEST/build.XXXXXX")"
LOG="$DEST/build.log"
trap 'rm -rf "$WORK"' EXIT
: >"$LOG"

fail() {
  say "FAILED: $* (full log: $LOG)"
  tail -n 40 "$LOG" >&2 || true
  exit 1
}

start=$(date +%s)
phase() { say "$1"; phase_start=$(date +%s); }
took() { echo "$(( $(date +%s) - phase_start )) s"; }
say "building llama-server from llama-cpp-python==$VERSION (once; cached in $DEST) ..."

phase "fetching the sdist with pip"
python -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
  -d "$WORK" "llama-cpp-python==$VERSION" >>"$LOG" 2>&1 || fail "pip download llama-cpp-python==$VERSION"
sdist=("$WORK"/llama_cpp_python-"$VERSION".tar.gz)
[ -f "${sdist[0]}" ] || fail "no sdist in $WORK"
tar -xzf "${sdist[0]}" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp" >>"$LOG" 2>&1 \
  || fail "unpacking ${sdist[0]}"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

say "  sdist fetched and unpacked ($(took))"
phase "configuring (cmake)"
cmake -S "$SRC" -B "$WORK/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF \
  -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  >>"$LOG" 2>&1 || fail "cmake configure"

say "  configured ($(took))"
phase "compiling the llama-server target with $(nproc) jobs (~5 min on 2 cores)"
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >>"$LOG" 2>&1 || fail "cmake --build"

say "  compiled ($(took))"
built="$WORK/build/bin/llama-server"
[ -x "$built" ] || fail "no $built after the build"
"$built" --version >>"$LOG" 2>&1 || fail "the built llama-server does not run"
cp "$built" "$WORK/llama-server.new"
mv -f "$WORK/llama-server.new" "$BIN"  # atomic: a half-copied binary is never at $BIN

elapsed=$(( $(date +%s) - start ))
{
  echo "llama-cpp-python $VERSION, vendor/llama.cpp, target llama-server"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores in ${elapsed} s"
  "$BIN" --version 2>&1 || true
} >"$DEST/BUILD_INFO"
say "done in ${elapsed} s: $BIN"
echo "$BIN"
