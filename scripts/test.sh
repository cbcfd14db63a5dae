#!/usr/bin/env bash
# The one test command (README "Tests"; .ci/run calls it): installs what pip cannot, builds llama.cpp's
# C++ server once, then runs pytest.
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -k sim     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)  # shifted worker clocks (tests/e2e/test_generator_e2e.py)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The project with its test extras, and the llama.cpp engine (built from source once, then pip's cache
# reuses the wheel). GGML_NATIVE=OFF gives a portable build of the same speed.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
python -m pip install -q --disable-pip-version-check -e ".[test,engine]"

# One installed namespace (issue 19): from a folder outside the checkout, with a user's own reports.py and
# scenarios.py beside a copy of the locustfile, everything still imports from ollama_locust.
namespace_check="$(mktemp -d)"
cp locustfile.py "$namespace_check/"
for name in reports scenarios simulator; do
  echo "raise ImportError('the user\'s own $name.py shadowed ollama-locust')" > "$namespace_check/$name.py"
done
( cd "$namespace_check" && python -c "import locustfile, ollama_locust.reports, ollama_locust.simulator.cli" \
    && python -m locust -f locustfile.py --list >/dev/null ) || {
  echo "test.sh: the installed package does not import from outside the checkout (see above)" >&2
  exit 1
}
rm -rf "$namespace_check"

# llama.cpp's C++ server (llama-server --parallel 2: real batching, tests/e2e/engine/test_llama_server_batching.py),
# compiled from the same llama-cpp-python sdist the first time (~5.5 min on 2 cores), then taken from
# ${XDG_CACHE_HOME:-~/.cache}/ollama-locust/. A set OLLAMA_LOCUST_LLAMA_SERVER names a binary to use instead.
# A failed build stops here: the tests never run without it.
if [ -z "${OLLAMA_LOCUST_LLAMA_SERVER:-}" ]; then
  OLLAMA_LOCUST_LLAMA_SERVER="$(bash scripts/build_llama_server.sh)" || {
    echo "test.sh: building llama-server failed (see the messages above)" >&2
    exit 1
  }
fi
export OLLAMA_LOCUST_LLAMA_SERVER

exec python -m pytest --durations=20 "$@"  # the 20 slowest tests, to keep the suite well inside CI's limit
