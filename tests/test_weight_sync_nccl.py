"""`vllm_nccl`: what can be checked without a GPU, against the real vLLM 0.32 code where it matters.

The wire test runs vLLM's own worker side (`NCCLWeightTransferEngine`: layerwise reload, the packed consumer,
the Llama loader) in the vLLM environment, on CPU, on a vLLM Llama built from the untied server copy of the
tiny model. Only the transport is replaced: each NCCL broadcast the workers post is filled with the next
buffer ajet's sender produced, after checking that its length and dtype are what the sender sent. NCCL itself,
the HTTP rendezvous and the CUDA streams need GPUs: `gpu`-marked, skipped without CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ajet.core.config import AjetConfig
from ajet.trainer.weight_sync.base import WeightSyncError
from ajet.trainer.weight_sync.vllm_nccl import (
    NcclLibrary,
    VllmNcclSync,
    packed_chunks,
    update_info,
    wire_tensors,
)
from tests.weights import offline_vllm_engine, perturbed

VLLM_PYTHON = Path(os.environ.get("AJET_VLLM_PYTHON") or "/nonexistent/AJET_VLLM_PYTHON-not-set")


def make_config(**overrides: Any) -> AjetConfig:
    raw: dict[str, Any] = {
        "workflow": "my_pkg.flows:MathWorkflow",
        "model": {"device": "cuda"},
        "engine": {"kind": "vllm", "base_url": "http://127.0.0.1:9", "weight_sync": "vllm_nccl"},
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return AjetConfig.model_validate(raw)


def make_engine(tokenizer: Any) -> Any:
    """A real VLLMEngine pointed at a port nothing listens on: the refusals below happen before any request."""
    return offline_vllm_engine(
        tokenizer,
        base_url="http://127.0.0.1:9",
        served_model="tiny",
        max_model_len=512,
        vocab_size=len(tokenizer),
        eos_ids=[tokenizer.eos_token_id],
    )


@pytest.fixture
def perturbed_tiny(tiny_model_and_tokenizer: tuple[Any, Any]) -> Any:
    """A copy of the tiny model with every weight moved, as after a training step (the shared one stays)."""
    return perturbed(tiny_model_and_tokenizer[0], seed=1, scale=0.05)


# ---- refusals with a clear message ----


def test_needs_a_vllm_engine(engine: Any) -> None:
    with pytest.raises(WeightSyncError, match=r"needs engine\.kind vllm"):
        VllmNcclSync(engine, make_config())


def test_refuses_lora_config(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    config = make_config(train={"lora": {"enabled": True}})
    with pytest.raises(WeightSyncError, match="vllm_lora"):
        VllmNcclSync(make_engine(tiny_model_and_tokenizer[1]), config)


def test_refuses_a_cpu_trainer(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    config = make_config(model={"device": "cpu"})
    with pytest.raises(WeightSyncError, match=r"model\.device: cuda"):
        VllmNcclSync(make_engine(tiny_model_and_tokenizer[1]), config)


async def test_refuses_a_peft_policy(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    import copy

    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_model_and_tokenizer
    peft_policy = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj"]))
    sync = VllmNcclSync(make_engine(tokenizer), make_config())
    with pytest.raises(WeightSyncError, match=r"peft \(LoRA\) model.*vllm_lora"):
        await sync.start(peft_policy)
    with pytest.raises(WeightSyncError, match="vllm_lora"):
        wire_tensors(peft_policy, torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gets")
async def test_without_cuda_says_so(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    sync = VllmNcclSync(make_engine(tokenizer), make_config())
    with pytest.raises(WeightSyncError, match=r"needs CUDA in the trainer.*vllm_reload"):
        await sync.start(model)


def test_missing_nccl_library_names_the_install(tmp_path: Path) -> None:
    with pytest.raises(WeightSyncError, match=r"nvidia-nccl-cu12.*nccl_library"):
        NcclLibrary(str(tmp_path / "libnccl.so.2"))


def test_a_library_without_nccl_is_named() -> None:
    import ctypes.util

    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(WeightSyncError, match="has no nccl"):
        NcclLibrary(libc)


# ---- what is announced ----


def test_announces_the_server_checkpoint(tiny_dir: Path, tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    """The names and shapes are exactly the tensors of the untied copy ajet starts the server from (what vLLM's
    loader read at startup), the tied head included; floating-point dtypes are the server's."""
    from safetensors import safe_open

    from ajet.core.engines.vllm_model import untied_model_dir

    model = tiny_model_and_tokenizer[0]
    server_dir = untied_model_dir(tiny_dir)
    checkpoint: dict[str, list[int]] = {}
    for shard in server_dir.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                checkpoint[key] = list(f.get_slice(key).get_shape())
    info = update_info(wire_tensors(model, torch.bfloat16))
    assert "lm_head.weight" in info["names"] and "lm_head.weight" not in dict(model.named_parameters())
    assert dict(zip(info["names"], info["shapes"], strict=True)) == checkpoint
    assert len(info["names"]) == len(set(info["names"]))
    assert set(info["dtype_names"]) == {"bfloat16"}
    assert all(isinstance(getattr(torch, name), torch.dtype) for name in info["dtype_names"])
    json.dumps({"update_info": info})  # the HTTP body must be plain JSON

    untied = update_info(wire_tensors(model, torch.float32, send_tied_head=False))
    assert untied["names"] == [n for n in info["names"] if n != "lm_head.weight"]


def test_server_dtype_comes_from_the_config(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    tokenizer = tiny_model_and_tokenizer[1]
    assert VllmNcclSync(make_engine(tokenizer), make_config()).dtype_name == "float32"
    bf16 = make_config(model={"device": "cuda", "autocast": "bfloat16"})
    assert VllmNcclSync(make_engine(tokenizer), bf16).dtype_name == "bfloat16"


def test_packed_chunks_close_after_the_tensor_that_overflows() -> None:
    assert packed_chunks([4, 4, 4], 8) == [[0, 1, 2]]  # 12 > 8 only after the third
    assert packed_chunks([4, 4, 4, 1], 7) == [[0, 1], [2, 3]]
    assert packed_chunks([20, 1], 8) == [[0], [1]]  # a tensor larger than the buffer goes alone
    assert packed_chunks([], 8) == []
    assert [i for chunk in packed_chunks(list(range(1, 50)), 30) for i in chunk] == list(range(49))


# ---- the wire, against vLLM's own worker code ----

WORKER_SIDE = r"""
import json, sys, contextlib
import torch
from vllm.config import VllmConfig, ModelConfig, set_current_vllm_config
from vllm.config.weight_transfer import WeightTransferConfig
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.distributed.weight_transfer import packed_tensor
from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine
from vllm.model_executor.model_loader.utils import initialize_model, process_weights_after_loading
from vllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator

server_dir, wire_file, out_file, port = sys.argv[1:5]
wire = torch.load(wire_file)
mc = ModelConfig(model=server_dir, dtype="float32", max_model_len=512)
vc = VllmConfig(model_config=mc)

class Wire:
    # stands in for the PyNcclCommunicator: each broadcast the worker posts gets the sender's next buffer
    def __init__(self, buffers):
        self.buffers, self.posted = list(buffers), []
    def broadcast(self, tensor, src, stream=None):
        sent = self.buffers.pop(0)
        assert src == 0
        got, want = (tensor.dtype, tensor.numel()), (sent.dtype, sent.numel())
        assert got == want, (got, want)
        self.posted.append(tensor.numel())
        tensor.copy_(sent.reshape(tensor.shape))

class NoStream:  # the CUDA streams the packed consumer double-buffers on
    def synchronize(self): pass

packed_tensor._get_streams = lambda device, n: tuple(NoStream() for _ in range(n))
torch.cuda.stream = lambda s: contextlib.nullcontext()
torch.cuda.current_stream = lambda *a: None  # the one-by-one path passes it to broadcast
torch.accelerator.current_device_index = lambda: 0
torch.accelerator.synchronize = lambda *a: None

with set_current_vllm_config(vc):
    init_distributed_environment(world_size=1, rank=0, local_rank=0,
        distributed_init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
    initialize_model_parallel(1, 1)
    with torch.device("cpu"):
        model = initialize_model(vllm_config=vc)
    import glob
    model.load_weights(safetensors_weights_iterator(sorted(glob.glob(server_dir + "/*.safetensors")), False))
    process_weights_after_loading(model, mc, torch.device("cpu"))

    engine = NCCLWeightTransferEngine(WeightTransferConfig(), vc, torch.device("cpu"), model)
    engine.packed = wire["packed"]
    engine.packed_buffer_size_bytes = wire["buffer_bytes"]
    engine.packed_num_buffers = 2
    engine.model_update_group = Wire(wire["buffers"])
    engine.start_weight_update()
    engine.update_weights(wire["update_info"])
    engine.finish_weight_update()
    left = len(engine.model_update_group.buffers)
    params = {n: p.detach().clone() for n, p in model.named_parameters() if p.numel()}
    # vLLM on CPU repacks linear weights into its GEMM kernel's format and empties `weight`: read what the
    # server computes with instead, the layer applied to the identity
    for prefix, layer in model.named_modules():
        if hasattr(layer, "cpu_linear") and hasattr(layer, "input_size_per_partition"):
            eye = torch.eye(layer.input_size_per_partition)
            params[prefix + ".weight"] = layer.cpu_linear(eye, layer.weight, None).T.contiguous()
torch.save({"params": params, "unconsumed": left, "posted": engine.model_update_group.posted}, out_file)
"""


def expected_vllm_params(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vLLM's Llama holds q/k/v and gate/up fused: what its parameters must be after loading `hf`."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in hf.items():
        if ".q_proj." in name:
            parts = [hf[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[name.replace("q_proj", "qkv_proj")] = torch.cat(parts)
        elif ".gate_proj." in name:
            parts = [hf[name.replace("gate_proj", p)] for p in ("gate_proj", "up_proj")]
            out[name.replace("gate_proj", "gate_up_proj")] = torch.cat(parts)
        elif not any(p in name for p in (".k_proj.", ".v_proj.", ".up_proj.")):
            out[name] = tensor
    return out


@pytest.mark.vllm
@pytest.mark.skipif(
    not VLLM_PYTHON.exists() and os.environ.get("AJET_REQUIRE_VLLM") != "1",
    reason="needs the vLLM environment (AJET_VLLM_PYTHON)",
)
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "one-by-one"])
def test_vllm_worker_loads_what_ajet_sends(
    packed: bool,
    perturbed_tiny: Any,
    tiny_dir: Path,
    tiny_model_and_tokenizer: tuple[Any, Any],
    tmp_path: Path,
) -> None:
    from ajet.core.engines.vllm_model import untied_model_dir

    tokenizer = tiny_model_and_tokenizer[1]
    # the tiny model's embeddings are 12.6 MB in float32, its layer weights 0.25-32 kB: the embeddings and the
    # head go alone, the layers in many chunks of a few tensors each
    buffer_bytes = 20_000
    options = {"nccl_packed": packed, "nccl_buffer_bytes": buffer_bytes}
    sync = VllmNcclSync(make_engine(tokenizer), make_config(engine={"options": options}))
    tensors = wire_tensors(perturbed_tiny, torch.float32)
    buffers = [b.clone() for b in sync._batches(tensors)]  # exactly what rank 0 would broadcast
    if packed:
        assert all(b.dtype == torch.uint8 for b in buffers) and 3 < len(buffers) < len(tensors)
    else:
        assert len(buffers) == len(tensors)
    wire_file, out_file = tmp_path / "wire.pt", tmp_path / "out.pt"
    torch.save(
        {
            "packed": packed,
            "buffer_bytes": buffer_bytes,
            "update_info": update_info(tensors),
            "buffers": buffers,
        },
        wire_file,
    )
    port = 29600 + os.getpid() % 300 + (0 if packed else 1)
    run = subprocess.run(
        [
            str(VLLM_PYTHON),
            "-c",
            WORKER_SIDE,
            str(untied_model_dir(tiny_dir)),
            str(wire_file),
            str(out_file),
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VLLM_TARGET_DEVICE": "cpu", "PYTHONPATH": ""},
        cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = torch.load(out_file)
    assert result["unconsumed"] == 0  # the workers posted exactly as many receives as ajet sent
    assert result["posted"] == [b.numel() for b in buffers]

    hf = {n: p.detach() for n, p in perturbed_tiny.named_parameters()}
    hf["lm_head.weight"] = hf["model.embed_tokens.weight"]
    expected = expected_vllm_params(hf)
    served = result["params"]
    assert set(served) == set(expected)
    for name, tensor in expected.items():
        assert served[name].shape == tensor.shape, name
        assert torch.allclose(served[name], tensor, atol=1e-6, rtol=0), name  # perturbations are ~5e-2
    original = tiny_model_and_tokenizer[0].get_input_embeddings().weight
    assert not torch.equal(served["lm_head.weight"], original)  # the head moved with the embeddings


# ---- GPU only ----


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and libnccl")
def test_nccl_library_mints_a_unique_id() -> None:
    from ajet.trainer.weight_sync.vllm_nccl import find_nccl_library

    nccl = NcclLibrary(find_nccl_library())
    assert nccl.version() >= 21800
    first, second = nccl.unique_id(), nccl.unique_id()
    assert len(first) == 128 and first != second


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a GPU")
def test_single_rank_group_broadcasts_and_reduces() -> None:
    """A one-rank group: init, the warm-up all_reduce and a broadcast run through the ctypes binding."""
    from ajet.trainer.weight_sync.vllm_nccl import find_nccl_library

    nccl = NcclLibrary(find_nccl_library())
    comm = nccl.init_rank(1, nccl.unique_id(), 0)
    stream = torch.cuda.current_stream()
    x = torch.arange(5, dtype=torch.bfloat16, device="cuda")
    nccl.all_reduce_sum(torch.ones(1, device="cuda"), comm, stream.cuda_stream)
    nccl.broadcast_from_root(x, comm, stream.cuda_stream)
    stream.synchronize()
    assert x.tolist() == [0, 1, 2, 3, 4]
    nccl.abort(comm)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
