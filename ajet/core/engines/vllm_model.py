"""The model directory a vLLM server is started from, when ajet will reload full weights into it.

vLLM 0.32's in-place reload (`reload_weights`) breaks tied embeddings: it loads new embeddings into a new
tensor, while the output head, which the checkpoint does not hold separately, is put back as its old tensor
(the server logs "ParallelLMHead: Failed to load weights"). The server then computes its logits with the old
head: every pushed version would serve the wrong weights, silently. Measured on SmolLM2-135M (tied): after a
push the greedy ids were those of the new body with the *old* head, exactly.

So a server that receives full-weight pushes is started from an untied copy of a tied model: the same weights,
with `lm_head.weight` written out as a copy of the embeddings and `tie_word_embeddings: false`. The logits are
identical (same matrix), the head now loads like any other weight, and the trainer's pushes write both. The copy
is made once, next to the model (cached), atomically.

    python -m ajet.core.engines.vllm_model MODEL_DIR     # prints the directory to start your own server from
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path


def is_tied(model_dir: Path) -> bool:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return bool(config.get("tie_word_embeddings", False))


def untied_model_dir(model_dir: Path) -> Path:
    """`model_dir` itself when its output head is not tied, else its untied copy (made once, cached)."""
    model_dir = Path(model_dir)
    if not is_tied(model_dir):
        return model_dir
    target = model_dir.with_name(model_dir.name + "-untied")
    if (target / "config.json").is_file():
        return target
    from safetensors.torch import load_file, save_file

    tensors: dict = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    embeddings = next((k for k in tensors if k.endswith("embed_tokens.weight")), None)
    if embeddings is None:
        raise ValueError(
            f"{model_dir}: no embed_tokens.weight in its safetensors; cannot untie the output head"
        )
    head = embeddings.replace("model.embed_tokens.weight", "lm_head.weight")
    tensors[head] = tensors[embeddings].clone()
    partial = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for item in model_dir.iterdir():
            if (
                item.is_file()
                and not item.name.endswith(".safetensors")
                and item.name != "model.safetensors.index.json"
            ):
                shutil.copy2(item, partial / item.name)
        config = json.loads((model_dir / "config.json").read_text())
        config["tie_word_embeddings"] = False
        (partial / "config.json").write_text(json.dumps(config, indent=2))
        save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
        try:
            partial.rename(target)
        except OSError:  # another process made it meanwhile
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m ajet.core.engines.vllm_model MODEL_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(untied_model_dir(Path(sys.argv[1])))
