#!/usr/bin/env bash
# The one test command (README "Tests"; .ci/run calls it): installs what pip cannot, then runs pytest.
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -k sim     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The project with its test extras, and the llama.cpp engine (built from source once, then pip's cache
# reuses the wheel). GGML_NATIVE=OFF gives a portable build of the same speed.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
python -m pip install -q --disable-pip-version-check -e ".[test,engine]"

exec python -m pytest "$@"
