"""A vLLM server as ajet's inference engine: token ids in, token ids and log-probs out, over HTTP.

Why it is built this way:
- The gateway still renders the chat template and sends token ids (`/v1/completions` with `prompt` = ids), and
  the server returns the sampled ids and their log-probs (`return_token_ids`, `logprobs: 0`), so recording stays
  token-exact: nothing is re-tokenised.
- The log-prob contract (docs/logprob-contract.md): ajet records log p(token) under logits / temperature,
  before top-p. A vLLM server started with `--logprobs-mode processed_logprobs` returns exactly that when
  top_p is 1 (vllm/v1/sample/sampler.py: temperature, then top-k/top-p, then the log-softmax). With top_p < 1
  its log-probs are renormalised over the nucleus, which no trainer can recompute from the ids, so such a
  request is refused (400) rather than recorded wrong. `connect` checks the server's mode.
- Constrained decoding is not offered (`supports_constraints = False`): vLLM applies the grammar bitmask to the
  logits before any log-prob, so constrained log-probs would be of the masked distribution.
- Policy versions are ours, not the server's: a `VersionGate` admits each request at a version and drains
  the running ones around a weight push, so no completion mixes two versions.
- Everything sampling-related is sent explicitly (top_k, penalties, min_p, stop token ids): a server's
  defaults must not change the distribution behind the trainer's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ajet.core.constraints import Constraint
from ajet.core.engines.base import EngineRequestError, EngineUnavailableError, InferenceEngine
from ajet.core.engines.gate import VersionGate
from ajet.core.engines.vllm_server import VllmServer, free_port, server_argv, server_env
from ajet.core.types import Completion, SamplingParams

if TYPE_CHECKING:
    from ajet.core.config import AjetConfig

logger = logging.getLogger(__name__)


class VLLMServerError(RuntimeError):
    """The server answered with an error status; `status` and the server's own message."""

    def __init__(self, status: int, message: str, path: str) -> None:
        super().__init__(f"vLLM server {path}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.path = path


def server_root(url: str) -> str:
    """`http://host:8000/v1/` -> `http://host:8000`: we call both /v1 routes and the server's admin routes."""
    return re.sub(r"/v1/?$", "", url.rstrip("/"))


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(body.get("message") or error)
    return str(body)[:500]


class VLLMEngine(InferenceEngine):
    """Serve completions from a vLLM server; see the module docstring for the contract it keeps."""

    supports_constraints = False

    def __init__(
        self,
        *,
        base_url: str,
        tokenizer: Any,
        served_model: str,
        max_model_len: int,
        vocab_size: int,
        eos_ids: Iterable[int],
        model_name: str = "ajet-policy",
        request_timeout_s: float = 600.0,
        server: VllmServer | None = None,
    ) -> None:
        self.base_url = server_root(base_url)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.served_model = served_model
        self.max_model_len = max_model_len
        self.max_context = max_model_len  # what the gateway reads as the context length
        self.vocab_size = vocab_size
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.request_timeout_s = request_timeout_s
        self.server = server
        self._gate = VersionGate()
        self._route = served_model  # the model requests ask for: the base, or the newest LoRA adapter
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}

    # ---- InferenceEngine ----

    @property
    def version(self) -> int:
        return self._gate.version

    @property
    def route(self) -> str:
        """The model name requests are sent to: the served base model, or the LoRA adapter last pushed."""
        return self._route

    @property
    def active_requests(self) -> int:
        return self._gate.active

    @property
    def pushing(self) -> bool:
        """A weight push holds new requests back (it waits for the running ones, then swaps)."""
        return self._gate.updating

    async def generate(
        self, prompt_ids: list[int], sampling: SamplingParams, constraint: Constraint | None = None
    ) -> Completion:
        if constraint is not None:
            raise EngineRequestError("the vLLM engine does not constrain decoding (see docs/vllm.md)")
        prompt = self._check_prompt(prompt_ids, sampling)
        async with self._gate.request() as version:
            body = self._completion_body(prompt, sampling)
            data = await self._request("POST", "/v1/completions", body, timeout_s=self.request_timeout_s)
        return self._completion(data, sampling, version)

    async def load_weights(self, weights: Any, version: int | None = None) -> None:
        """Reload full weights from a directory of safetensors files on the server's machine (the
        `vllm_reload` weight sync writes it), then serve them as `version` (default: the current one + 1)."""
        async with self.updating(self.version + 1 if version is None else version):
            await self.reload_weights(str(weights))

    async def serve_as_version(self, version: int) -> None:
        async with self.updating(version):
            pass  # the server keeps its weights; requests from now on carry `version`

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        loop = asyncio.get_running_loop()
        for owner, client in clients.values():
            if owner is loop:
                await client.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

    def default_weight_sync(self, lora: bool) -> str:
        return "vllm_lora" if lora else "vllm_reload"

    def check_health(self) -> None:
        if self.server is not None and self.server.returncode is not None:
            raise EngineUnavailableError(self.server.describe_exit())

    # ---- weight pushes (used by ajet.trainer.weight_sync) ----

    @contextlib.asynccontextmanager
    async def updating(self, version: int, route: str | None = None) -> AsyncIterator[None]:
        """Hold new requests, wait for the running ones, run the body (the transfer), then serve `version`
        (routed to the model `route`, e.g. a LoRA adapter's name, when given). A failed body keeps the old
        version and route."""
        async with self._gate.update(version):
            yield
            if route is not None:
                self._route = route

    async def reload_weights(self, weights_path: str) -> None:
        """Reload every weight in place from `weights_path` (needs VLLM_SERVER_DEV_MODE=1 on the server), then
        empty the server's prefix cache: it holds key/values computed with the old weights, which vLLM would
        otherwise reuse for any prompt that starts like an earlier one (a long system prompt, a multi-turn
        agent), silently serving a mix of versions. Call it inside `updating`, when nothing is running."""
        await self.post(
            "/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": weights_path}}
        )
        await self.reset_prefix_cache()

    async def reset_prefix_cache(self) -> None:
        answer = await self.post("/reset_prefix_cache", {})
        if isinstance(answer, dict) and answer.get("success") is False:
            raise EngineUnavailableError(
                "the vLLM server refused to empty its prefix cache after a weight push (blocks still held); "
                "completions would reuse key/values of the old weights"
            )

    # ---- HTTP ----

    async def post(self, path: str, payload: dict[str, Any], timeout_s: float = 600.0) -> Any:
        return await self._request("POST", path, payload, timeout_s=timeout_s)

    async def get(self, path: str, timeout_s: float = 60.0) -> Any:
        return await self._request("GET", path, None, timeout_s=timeout_s)

    def _client(self) -> httpx.AsyncClient:
        # One client per event loop: the gateway's requests and the trainer's pushes run on different loops.
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
                limits=httpx.Limits(max_connections=1024, max_keepalive_connections=64),
            )
            self._clients[id(loop)] = entry = (loop, client)
        return entry[1]

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None, timeout_s: float) -> Any:
        url = self.base_url + path
        try:
            response = await self._client().request(method, url, json=payload, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise EngineUnavailableError(
                f"the vLLM server at {self.base_url} did not answer {path} within {timeout_s:g} s "
                f"({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            self.check_health()  # a launched server that died says so, with its log
            raise EngineUnavailableError(
                f"cannot reach the vLLM server at {self.base_url} ({path}): {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise VLLMServerError(response.status_code, _error_message(response), path)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # ---- requests and answers ----

    def _check_prompt(self, prompt_ids: list[int], sampling: SamplingParams) -> list[int]:
        prompt = [int(i) for i in prompt_ids]
        if not prompt:
            raise EngineRequestError("prompt_ids is empty: the model needs at least one prompt token")
        bad = [i for i in prompt if not 0 <= i < self.vocab_size]
        if bad:
            raise EngineRequestError(
                f"prompt_ids has ids outside the vocabulary [0, {self.vocab_size}): {bad[:5]}"
            )
        if len(prompt) > self.max_model_len - 1:
            raise EngineRequestError(
                f"the prompt is {len(prompt)} tokens, but the vLLM server's context is {self.max_model_len} "
                "tokens (engine.launch.max_model_len, or the server's --max-model-len); shorten the conversation"
            )
        if sampling.top_p < 1.0:
            raise EngineRequestError(
                f"top_p {sampling.top_p:g}: the vLLM engine records log-probs only with top_p 1 (vLLM's "
                "log-probs under top-p are renormalised over the nucleus, which the trainer cannot recompute); "
                "use top_p 1, or engine.kind transformers (docs/vllm.md)"
            )
        return prompt

    def _completion_body(self, prompt: list[int], sampling: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._route,
            "prompt": prompt,
            # clamped like the transformers engine: what the context leaves after the prompt
            "max_tokens": min(sampling.max_tokens, self.max_model_len - len(prompt)),
            "temperature": sampling.temperature,
            "top_p": 1.0,
            "top_k": 0,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "stop_token_ids": sorted(self.eos_ids),
            "logprobs": 0,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": True,
            "include_stop_str_in_output": False,
        }
        stops = [s for s in sampling.stop if s]
        if stops:
            body["stop"] = stops
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    def _completion(self, data: Any, sampling: SamplingParams, version: int) -> Completion:
        try:
            choice = data["choices"][0]
            ids = [int(i) for i in choice["token_ids"]]
            logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EngineUnavailableError(
                f"the vLLM server's answer has no token ids and log-probs ({type(exc).__name__}: {exc}); "
                "is it vLLM 0.32 or newer?"
            ) from None
        if len(logprobs) != len(ids):
            raise EngineUnavailableError(
                f"the vLLM server returned {len(ids)} token ids but {len(logprobs)} log-probs"
            )
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(
            ids=ids,
            logprobs=logprobs,
            text=self._text(ids, sampling),
            finish_reason=reason,
            model_version=version,
        )

    def _text(self, ids: list[int], sampling: SamplingParams) -> str:
        # Decoded here, exactly as the transformers engine does, so both engines give the same text for the
        # same ids: special tokens skipped, cut before the first stop string.
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cuts = [text.find(s) for s in sampling.stop if s]
        found = [c for c in cuts if c >= 0]
        return text[: min(found)] if found else text


# ---- building one from the config ----


def engine_from_config(
    config: AjetConfig, run_dir: Path | None = None, show_progress: bool = True
) -> VLLMEngine:
    """`engine: {kind: vllm}`: start the server (`launch`) or connect to one (`base_url`), and check that it
    keeps the log-prob contract before any episode runs."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from ajet.core.models import resolve_model

    engine_config = config.engine
    model_dir = str(resolve_model(config.model.path))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf_config = AutoConfig.from_pretrained(model_dir)
    try:
        generation = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # no generation_config.json
        generation = None
    server: VllmServer | None = None
    if engine_config.launch is not None:
        launch = engine_config.launch
        lora = config.train.lora
        port = launch.port or free_port()
        if engine_config.weight_sync != "vllm_lora" and not (
            lora.enabled and engine_config.weight_sync == "auto"
        ):
            from ajet.core.engines.vllm_model import untied_model_dir

            # full-weight pushes: vLLM's in-place reload breaks tied heads (see vllm_model)
            server_model_dir = str(untied_model_dir(Path(model_dir)))
        else:
            server_model_dir = model_dir
        where = Path(run_dir) if run_dir is not None else config.resolved_run_dir()
        argv = server_argv(
            python=launch.python,
            command=launch.command,
            model_dir=server_model_dir,
            served_name=config.model.served_name,
            port=port,
            dtype=config.model.autocast if config.model.autocast != "none" else config.model.dtype,
            max_model_len=launch.max_model_len,
            seed=config.seed,
            enforce_eager=launch.enforce_eager
            if launch.enforce_eager is not None
            else config.model.device == "cpu",
            lora_rank=(launch.max_lora_rank or lora.r) if lora.enabled else None,
            extra=[*launch.args, *_weight_transfer_args(engine_config.weight_sync, launch.args)],
        )
        server = VllmServer(
            argv,
            port=port,
            log_path=where / "vllm-server.log",
            env=server_env(lora.enabled, launch.env),
            startup_timeout_s=launch.startup_timeout_s,
        )
        server.start(show_progress=show_progress)
        base_url = server.base_url
    else:
        assert engine_config.base_url is not None  # the config validator guarantees one of the two
        base_url = server_root(engine_config.base_url)
    try:
        served, max_model_len = _served_model(base_url, engine_config.remote_model)
        engine = VLLMEngine(
            base_url=base_url,
            tokenizer=tokenizer,
            served_model=served,
            max_model_len=max_model_len,
            vocab_size=int(hf_config.vocab_size),
            eos_ids=_eos_ids(tokenizer, generation),
            model_name=config.model.served_name,
            request_timeout_s=engine_config.request_timeout_s,
            server=server,
        )
        _check_processed_logprobs(engine)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return engine


def _weight_transfer_args(weight_sync: str, args: list[str]) -> list[str]:
    """`vllm_nccl` needs the server's weight-transfer engine, which vLLM only builds when asked."""
    if weight_sync != "vllm_nccl" or any(a.startswith("--weight-transfer-config") for a in args):
        return []
    return ["--weight-transfer-config", '{"backend": "nccl"}']


def _eos_ids(tokenizer: Any, generation: Any) -> set[int]:
    """The same end-of-sequence ids the transformers engine stops on: the tokenizer's and generation config's."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(generation, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    return ids


def _served_model(base_url: str, wanted: str | None) -> tuple[str, int]:
    """The model name to ask the server for, and its context length (from GET /v1/models)."""
    from ajet.core.config import ConfigError

    try:
        response = httpx.get(f"{base_url}/v1/models", timeout=30.0)
        response.raise_for_status()
        models = response.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"engine.base_url: no vLLM server answers at {base_url} ({type(exc).__name__}: {exc}); start one "
            "(python -m vllm.entrypoints.openai.api_server --model DIR ...) or use engine.launch"
        ) from None
    base = [m for m in models if not m.get("parent")]  # LoRA adapters list their base model as parent
    names = [m["id"] for m in base]
    if wanted is not None:
        chosen = next((m for m in base if m["id"] == wanted), None)
        if chosen is None:
            raise ConfigError(f"engine.remote_model: the server serves {names}, not {wanted!r}")
    elif len(base) == 1:
        chosen = base[0]
    else:
        raise ConfigError(f"engine.remote_model: the server serves {names}; name the one to train")
    return str(chosen["id"]), int(chosen.get("max_model_len") or 2048)


def _check_processed_logprobs(engine: VLLMEngine) -> None:
    """Refuse a server that returns raw (temperature-1) log-probs: the same first token's top log-probs at two
    temperatures are equal under --logprobs-mode raw_logprobs and differ under processed_logprobs."""
    from ajet.core.config import ConfigError

    prompt = engine.tokenizer.encode("The capital of France is")[-8:] or [0]

    def top(temperature: float) -> list[float]:
        body = {
            "model": engine.served_model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": temperature,
            "top_p": 1.0,
            "top_k": 0,
            "seed": 0,
            "logprobs": 3,
        }
        response = httpx.post(f"{engine.base_url}/v1/completions", json=body, timeout=120.0)
        if response.status_code >= 400:
            raise ConfigError(
                f"engine: the vLLM server at {engine.base_url} refused a test completion: {_error_message(response)}"
            )
        entry = response.json()["choices"][0]["logprobs"]["top_logprobs"][0]
        return sorted(entry.values(), reverse=True)

    if top(0.5) == top(2.0):
        raise ConfigError(
            f"engine.base_url: the vLLM server at {engine.base_url} returns raw log-probs (temperature 1), which "
            "would give every call at another temperature a wrong importance ratio; start it with "
            "--logprobs-mode processed_logprobs"
        )
