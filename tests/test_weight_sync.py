"""The weight-sync pieces that need no vLLM server: the state dict a server loads, the untied copy of a tied
model, the check that an engine serves the trainer's policy, the launcher's errors, the vLLM engine's refusals.
The pushes themselves, against a real server, are in tests/vllm/."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ajet.core.config import AjetConfig, LoraConfig
from ajet.core.engines.base import EngineRequestError
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.engines.vllm_engine import server_root
from ajet.core.engines.vllm_model import untied_model_dir
from ajet.core.engines.vllm_server import VllmServer, VllmServerError, server_argv
from ajet.core.types import SamplingParams
from ajet.trainer.policy import prepare_policy
from ajet.trainer.weight_sync.base import WeightSyncError
from ajet.trainer.weight_sync.shared_module import SharedModuleSync
from ajet.trainer.weight_sync.tensors import hf_state_dict, policy_state_dict
from ajet.trainer.weight_sync.verify import check_served_policy
from tests.weights import offline_vllm_engine, perturbed


def test_state_dict_writes_a_tied_head_as_its_own_copy(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    model, _ = tiny_model_and_tokenizer
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the tiny model is tied, like SmolLM2
    tensors = hf_state_dict(model)
    assert torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    assert tensors["lm_head.weight"].data_ptr() != tensors["model.embed_tokens.weight"].data_ptr()
    assert set(tensors) == set(model.state_dict())
    as_bf16 = hf_state_dict(model, torch.bfloat16)
    assert {t.dtype for t in as_bf16.values()} == {torch.bfloat16}


def test_a_lora_policy_is_pushed_with_its_deltas_under_the_checkpoint_names(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    model, _ = tiny_model_and_tokenizer
    policy = prepare_policy(
        copy.deepcopy(model), LoraConfig(enabled=True, r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        expected = policy(input_ids=ids).logits
        tensors = policy_state_dict(policy)
    assert set(tensors) == set(model.state_dict()), "checkpoint names: no base_layer, no lora_ tensors"
    plain = copy.deepcopy(model)
    plain.load_state_dict(tensors)
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5)
    after = dict(policy.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before), "the policy is untouched, bit for bit"


def test_the_untied_copy_gives_the_same_logits(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    untied = untied_model_dir(tiny_dir)
    assert untied != tiny_dir and untied_model_dir(tiny_dir) == untied  # made once
    assert json.loads((untied / "config.json").read_text())["tie_word_embeddings"] is False
    tensors = load_file(str(untied / "model.safetensors"))
    assert torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    original = AutoModelForCausalLM.from_pretrained(tiny_dir)
    copy_ = AutoModelForCausalLM.from_pretrained(untied)
    assert copy_.lm_head.weight is not copy_.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(original(input_ids=ids).logits, copy_(input_ids=ids).logits)
    assert untied_model_dir(untied) == untied  # already untied: itself


async def test_verification_passes_on_the_same_weights_and_stops_on_others(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    served = TransformersEngine(copy.deepcopy(model), tokenizer)
    try:
        diff = await check_served_policy(served, model, version=0, tolerance=1e-4)
        assert diff < 1e-5
        with pytest.raises(WeightSyncError, match="does not serve the pushed weights"):
            await check_served_policy(served, perturbed(model), version=0, tolerance=1e-3)
        with pytest.raises(WeightSyncError, match="served version 0"):
            await check_served_policy(served, model, version=1, tolerance=1e-3)
    finally:
        served.close()


async def test_shared_module_push_sets_the_served_version(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(copy.deepcopy(model), tokenizer)
    try:
        sync = SharedModuleSync(engine, None)
        metrics = await sync.push(engine.model, 7)
        assert engine.version == 7 and metrics["weight_sync/bytes"] == 0
        completion = await engine.generate([1, 2, 3], SamplingParams(temperature=0, max_tokens=2))
        assert completion.model_version == 7
    finally:
        engine.close()


async def test_vllm_engine_refuses_what_it_cannot_record_exactly(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    _, tokenizer = tiny_model_and_tokenizer
    engine = offline_vllm_engine(tokenizer)
    assert engine.base_url == "http://127.0.0.1:9" == server_root("http://127.0.0.1:9/v1/")
    with pytest.raises(EngineRequestError, match=r"top_p 0\.9.*top_p 1"):
        await engine.generate([1, 2], SamplingParams(top_p=0.9))
    with pytest.raises(EngineRequestError, match="outside the vocabulary"):
        await engine.generate([1, 200], SamplingParams())
    with pytest.raises(EngineRequestError, match="context is 64 tokens"):
        await engine.generate(list(range(1, 65)), SamplingParams())
    body = engine._completion_body(
        [1, 2], SamplingParams(temperature=0.7, max_tokens=500, stop=["x"], seed=3)
    )
    # every sampling knob pinned, the budget clamped to the context left, log-probs and ids asked for
    assert body["max_tokens"] == 62 and body["top_p"] == 1.0 and body["top_k"] == 0
    assert body["repetition_penalty"] == 1.0 and body["stop_token_ids"] == [2] and body["seed"] == 3
    assert body["logprobs"] == 0 and body["return_token_ids"] is True


async def test_an_unreachable_vllm_server_is_a_clear_error(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    from ajet.core.engines.base import EngineUnavailableError

    _, tokenizer = tiny_model_and_tokenizer
    engine = offline_vllm_engine(tokenizer)
    with pytest.raises(
        EngineUnavailableError, match=r"cannot reach the vLLM server at http://127\.0\.0\.1:9"
    ):
        await engine.generate([1, 2], SamplingParams(max_tokens=2))
    await engine.aclose()


def test_a_server_that_exits_at_start_is_an_error_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('no GPU found, giving up'); sys.exit(3)"]
    server = VllmServer(argv, port=9, log_path=tmp_path / "vllm-server.log", startup_timeout_s=30)
    with pytest.raises(VllmServerError, match=r"exited with code 3(.|\n)*vllm-server.log(.|\n)*no GPU found"):
        server.start(show_progress=False)
    assert not server.pid_path.exists()


def test_a_missing_server_python_says_how_to_build_one(tmp_path: Path) -> None:
    argv = server_argv(
        python=str(tmp_path / "nope" / "python"), command=None, model_dir="m", served_name="m", port=9,
        dtype="float32", max_model_len=64, seed=0, enforce_eager=True, lora_rank=None,
    )  # fmt: skip
    assert "--logprobs-mode" in argv and argv[argv.index("--logprobs-mode") + 1] == "processed_logprobs"
    server = VllmServer(argv, port=9, log_path=tmp_path / "vllm-server.log")
    with pytest.raises(VllmServerError, match=r"setup-vllm-cpu\.sh"):
        server.start(show_progress=False)


def test_vllm_config_shapes() -> None:
    config = AjetConfig.model_validate(
        {"workflow": "f.py:F", "engine": {"kind": "vllm", "launch": {"python": "/x/python"}}}
    )
    assert config.engine.launch is not None and config.engine.weight_sync == "auto"
    assert config.engine.verify_pushes is True
