"""Probe a running vLLM OpenAI-compatible server for the facts an ajet engine client relies on.

The script starts no server. It talks to one at ``--base-url`` over HTTP and checks what it
returns against a float32 transformers reference built from ``--model-dir`` (the same weights
the server was started with). Each fact is printed as one line:

    PASS <fact> <detail>      the behaviour the client relies on holds
    FAIL <fact> <detail>      it does not
    VALUE <fact> <detail>     a measured figure or an observed shape (no expectation)

Sections (``--only``): fields, stop, logprobs, greedy, seeds, context, reload, lora, pause,
cancel, throughput, rss. ``reload``, ``pause`` need ``VLLM_SERVER_DEV_MODE=1``; ``lora``
needs ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=1``. ``reload`` perturbs the
served weights and restores ``--model-dir`` at its end.

Example:
    python benchmarks/vllm_probe.py --base-url http://localhost:8101 --model-dir DIR \
        --only fields,stop,logprobs,greedy,seeds,context
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch

CHAT_PROMPTS: list[str] = [
    "Say hi.",
    "Name three colours.",
    "What is 2 + 2? Answer briefly.",
    "Write one sentence about the sea.",
]


def emit(kind: str, fact: str, detail: Any = "") -> None:
    """Print one result line; flush so a long section shows progress."""
    print(f"{kind} {fact} {detail}", flush=True)


def check(fact: str, ok: bool, detail: Any = "") -> bool:
    emit("PASS" if ok else "FAIL", fact, detail)
    return ok


class Probe:
    def __init__(
        self, base_url: str, model_dir: str, served_model: str | None, destructive: bool = False
    ) -> None:
        self.destructive = destructive
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base = base_url.rstrip("/")
        self.model_dir = model_dir
        self.http = httpx.Client(base_url=self.base, timeout=600.0)
        models = self.http.get("/v1/models").json()["data"]
        self.served = served_model or models[0]["id"]
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.hf.eval()
        self.eos_id: int = self.tok.convert_tokens_to_ids("<|im_end|>")

    # ---- helpers -------------------------------------------------------------------------

    def chat_ids(self, text: str) -> list[int]:
        out = self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        # transformers 5 may return a BatchEncoding instead of a list.
        if not isinstance(out, list):
            out = out["input_ids"]
        return [int(t) for t in out]

    def body(self, prompt: list[int], **kw: Any) -> dict[str, Any]:
        b: dict[str, Any] = {
            "model": self.served,
            "prompt": prompt,
            "max_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 0,
            "logprobs": 0,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }
        b.update(kw)
        return b

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post("/v1/completions", json=body)
        r.raise_for_status()
        return r.json()["choices"][0]

    @staticmethod
    def ids_and_lps(choice: dict[str, Any]) -> tuple[list[int], list[float]]:
        ids = [int(t) for t in choice["token_ids"]]
        lps = [float(x) for x in choice["logprobs"]["token_logprobs"]]
        return ids, lps

    @torch.no_grad()
    def ref_logits(self, prompt: list[int], completion: list[int]) -> torch.Tensor:
        """Logits that predicted each completion token (fp32 transformers forward)."""
        full = torch.tensor([prompt + completion])
        logits = self.hf(full).logits[0]
        return logits[len(prompt) - 1 : len(prompt) - 1 + len(completion)].float()

    @torch.no_grad()
    def hf_greedy(self, prompt: list[int], n: int, model: Any = None) -> list[int]:
        m = model if model is not None else self.hf
        out = m.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=n,
            eos_token_id=self.eos_id,
            pad_token_id=self.eos_id,
        )
        return [int(t) for t in out[0, len(prompt) :]]

    def greedy_ids(self, prompt: list[int], n: int = 64, model: str | None = None) -> list[int]:
        b = self.body(prompt, max_tokens=n)
        if model:
            b["model"] = model
        return self.ids_and_lps(self.complete(b))[0]

    # ---- 1 -------------------------------------------------------------------------------

    def fields(self) -> None:
        p = self.chat_ids(CHAT_PROMPTS[0])
        b = self.body(p, max_tokens=200)
        emit("VALUE", "fields.request", json.dumps({**b, "prompt": f"<{len(p)} ids>"}))
        c = self.complete(b)
        emit("VALUE", "fields.choice_keys", sorted(c))
        emit("VALUE", "fields.logprobs_keys", sorted(c["logprobs"]))
        ids, lps = self.ids_and_lps(c)
        toks = c["logprobs"]["tokens"]
        check("fields.token_ids_len_eq_logprobs_len", len(ids) == len(lps), f"{len(ids)} {len(lps)}")
        check(
            "fields.tokens_are_token_id_strings",
            toks == [f"token_id:{t}" for t in ids],
            toks[:3],
        )
        check("fields.prompt_token_ids_echoed", c.get("prompt_token_ids") == p)
        emit(
            "VALUE", "fields.finish_reason_on_eos", f"{c['finish_reason']!r} stop_reason={c['stop_reason']!r}"
        )
        check("fields.eos_included_in_token_ids", bool(ids) and ids[-1] == self.eos_id, ids[-3:])
        check("fields.eos_not_in_text", "<|im_end|>" not in c["text"], repr(c["text"][-30:]))
        # stop_token_ids: stop on a token that the greedy answer contains.
        if len(ids) > 4:
            target = ids[3]
            c2 = self.complete(self.body(p, max_tokens=200, stop_token_ids=[target]))
            ids2 = c2["token_ids"]
            emit(
                "VALUE",
                "fields.stop_token_ids",
                f"stop_token_ids=[{target}] -> token_ids={ids2} finish={c2['finish_reason']!r} "
                f"stop_reason={c2['stop_reason']!r} text={c2['text']!r}",
            )
            check("fields.stop_token_id_included", ids2 == ids[:4], ids2)
        c3 = self.complete(self.body(p, max_tokens=5))
        emit("VALUE", "fields.finish_reason_on_length", f"{c3['finish_reason']!r} n={len(c3['token_ids'])}")
        c4 = self.complete(self.body(p, max_tokens=20, ignore_eos=True))
        emit("VALUE", "fields.ignore_eos", f"n={len(c4['token_ids'])} ids_tail={c4['token_ids'][-5:]}")

    # ---- 2 -------------------------------------------------------------------------------

    def stop(self) -> None:
        p = self.chat_ids(CHAT_PROMPTS[3])
        base = self.complete(self.body(p, max_tokens=64))
        ids = base["token_ids"]
        text = base["text"]
        # A stop string that ends inside a multi-character token and one that spans tokens.
        pieces = [self.tok.decode(ids[: i + 1]) for i in range(len(ids))]
        mid = max(3, len(ids) // 3)
        word = self.tok.decode(ids[mid : mid + 2]).strip()
        stops = [word, word[:2] if len(word) >= 2 else word]
        for s in stops:
            c = self.complete(self.body(p, max_tokens=64, stop=[s]))
            cut = text.find(s)
            k = next(i for i, pc in enumerate(pieces) if s in pc) if s in text else -1
            emit(
                "VALUE",
                f"stop[{s!r}]",
                f"finish={c['finish_reason']!r} stop_reason={c['stop_reason']!r} "
                f"n_ids={len(c['token_ids'])} n_lps={len(c['logprobs']['token_logprobs'])} "
                f"token_completing_stop_index={k} text={c['text']!r}",
            )
            check(f"stop[{s!r}].text_cut_before_stop", c["text"] == text[:cut], repr(text[:cut]))
            check(
                f"stop[{s!r}].ids_end_at_completing_token",
                c["token_ids"] == ids[: k + 1],
                f"got {len(c['token_ids'])} want {k + 1}",
            )
            check(
                f"stop[{s!r}].ids_prefix_of_unstopped",
                ids[: len(c["token_ids"])] == c["token_ids"],
            )
        c = self.complete(self.body(p, max_tokens=64, stop=[word], include_stop_str_in_output=True))
        emit("VALUE", "stop.include_stop_str_in_output", repr(c["text"]))

    # ---- 3 -------------------------------------------------------------------------------

    def logprobs(self) -> None:
        for i, (temp, top_p) in enumerate(
            [(0.7, 1.0), (1.3, 1.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.8), (0.7, 0.8)]
        ):
            p = self.chat_ids(CHAT_PROMPTS[i % len(CHAT_PROMPTS)])
            c = self.complete(self.body(p, max_tokens=48, temperature=temp, top_p=top_p, seed=11 + i))
            ids, lps = self.ids_and_lps(c)
            logits = self.ref_logits(p, ids)
            t_eff = temp if temp > 0 else 1.0
            ls = torch.log_softmax(logits / t_eff, dim=-1)
            ref = ls[torch.arange(len(ids)), torch.tensor(ids)]
            got = torch.tensor(lps)
            d_plain = (ref - got).abs().max().item()
            raw = torch.log_softmax(logits, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)]
            d_raw = (raw - got).abs().max().item()
            line = (
                f"T={temp} top_p={top_p} n={len(ids)} max|lp-log_softmax(z/T)|={d_plain:.2e} "
                f"max|lp-log_softmax(z)|={d_raw:.2e}"
            )
            if top_p < 1.0:
                # Renormalise over the nucleus (smallest set with cumulative prob >= top_p).
                probs = ls.exp()
                sp, si = probs.sort(dim=-1, descending=True)
                keep_sorted = (sp.cumsum(-1) - sp) < top_p
                keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, si, keep_sorted)
                masked = torch.where(keep, ls, torch.tensor(-math.inf))
                nuc = torch.log_softmax(masked, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)]
                d_nuc = (nuc - got).abs().max().item()
                line += f" max|lp-nucleus_renorm|={d_nuc:.2e}"
            emit("VALUE", "logprobs", line)
            if top_p == 1.0:
                check(f"logprobs.T={temp}.equals_log_softmax(z/T)", d_plain < 1e-3, f"{d_plain:.2e}")

        # Mixed batch: greedy and sampled requests at different temperatures share a step.
        temps = [0.0, 0.7, 1.3, 1.0]
        ps = [self.chat_ids(q) for q in CHAT_PROMPTS]
        outs = asyncio.run(
            self._concurrent(
                [
                    self.body(p, max_tokens=48, temperature=t, seed=5, ignore_eos=True)
                    for p, t in zip(ps, temps, strict=True)
                ]
            )
        )
        for p, t, c in zip(ps, temps, outs, strict=True):
            ids, lps = self.ids_and_lps(c)
            z = self.ref_logits(p, ids) / (t if t > 0 else 1.0)
            ref = torch.log_softmax(z, -1)[torch.arange(len(ids)), torch.tensor(ids)]
            d = (ref - torch.tensor(lps)).abs().max().item()
            check(f"logprobs.mixed_batch.T={t}.equals_log_softmax(z/T)", d < 1e-3, f"{d:.2e}")

    # ---- 4 -------------------------------------------------------------------------------

    def greedy(self) -> None:
        for q in CHAT_PROMPTS:
            p = self.chat_ids(q)
            v = self.greedy_ids(p, 64)
            h = self.hf_greedy(p, 64)
            first = next((i for i, (a, b) in enumerate(zip(v, h, strict=False)) if a != b), None)
            check(f"greedy[{q!r}]", v == h, f"n_vllm={len(v)} n_hf={len(h)} first_diff={first}")

    # ---- 5 -------------------------------------------------------------------------------

    def seeds(self) -> None:
        p = self.chat_ids(CHAT_PROMPTS[1])
        a = self.complete(self.body(p, temperature=1.0, seed=123))["token_ids"]
        b = self.complete(self.body(p, temperature=1.0, seed=123))["token_ids"]
        c = self.complete(self.body(p, temperature=1.0, seed=124))["token_ids"]
        check("seeds.same_seed_same_ids", a == b)
        check("seeds.different_seed_different_ids", a != c)
        # Same seed while other requests share the batch (concurrent load).
        outs = asyncio.run(
            self._concurrent(
                [self.body(p, temperature=1.0, seed=123)]
                + [self.body(self.chat_ids(q), temperature=1.0, seed=7) for q in CHAT_PROMPTS]
            )
        )
        check("seeds.same_seed_same_ids_in_a_batch", outs[0]["token_ids"] == a)

    async def _concurrent(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base, timeout=600.0) as cl:
            rs = await asyncio.gather(*(cl.post("/v1/completions", json=b) for b in bodies))
        return [r.json()["choices"][0] for r in rs]

    # ---- 6 -------------------------------------------------------------------------------

    def context(self) -> None:
        models = self.http.get("/v1/models").json()["data"]
        mml = int(models[0].get("max_model_len") or 2048)
        emit("VALUE", "context.v1_models.max_model_len", mml)
        p = self.chat_ids(CHAT_PROMPTS[0])
        # Long prompt so that prompt + max_tokens passes the limit with a small max_tokens.
        longp = p + [28] * (mml - 35 - len(p))
        r = self.http.post("/v1/completions", json=self.body(longp, max_tokens=100, ignore_eos=True))
        c = r.json()["choices"][0] if r.status_code == 200 else {}
        emit(
            "VALUE",
            "context.prompt_plus_max_tokens_over",
            f"prompt={len(longp)} max_tokens=100 -> status={r.status_code} n={len(c.get('token_ids', []))} "
            f"finish={c.get('finish_reason')!r} body={'' if c else r.text[:300]}",
        )
        r = self.http.post("/v1/completions", json=self.body(p, max_tokens=mml + 1))
        emit("VALUE", "context.max_tokens_over_max_model_len", f"status={r.status_code} body={r.text[:300]}")
        for n in (mml - 1, mml, mml + 1):
            r = self.http.post("/v1/completions", json=self.body(list(range(5, 5 + n)), max_tokens=1))
            emit(
                "VALUE",
                f"context.prompt_len={n}",
                f"status={r.status_code} body={r.text[:300] if r.status_code != 200 else ''}",
            )
        r = self.http.post("/v1/completions", json=self.body(p, max_tokens=None))
        c = r.json()["choices"][0] if r.status_code == 200 else r.text
        emit(
            "VALUE",
            "context.max_tokens_null",
            f"status={r.status_code} n={len(c['token_ids']) if isinstance(c, dict) else c}",
        )

    # ---- 7 -------------------------------------------------------------------------------

    def rpc(self, method: str, timeout: float = 600.0, **kwargs: str) -> tuple[int, str, float]:
        t0 = time.perf_counter()
        # A fresh connection: the server drops a keep-alive connection after a 500 here.
        r = httpx.post(
            self.base + "/collective_rpc", json={"method": method, "kwargs": kwargs}, timeout=timeout
        )
        return r.status_code, r.text[:300], time.perf_counter() - t0

    def lp_diff(self, model: Any, prompt: list[int], choice: dict[str, Any]) -> float:
        ids, lps = self.ids_and_lps(choice)
        with torch.no_grad():
            z = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(ids)]
        ref = torch.log_softmax(z.float(), -1)[torch.arange(len(ids)), torch.tensor(ids)]
        return (ref - torch.tensor(lps)).abs().max().item()

    def reload(self) -> None:
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM

        prompts = [self.chat_ids(q) for q in CHAT_PROMPTS[:2]]
        before = [self.complete(self.body(p, max_tokens=32)) for p in prompts]
        sd = {k: v.detach().clone().contiguous() for k, v in self.hf.state_dict().items()}
        emb = "model.embed_tokens.weight"
        g = torch.Generator().manual_seed(0)
        noisy = {
            k: (v + 0.05 * v.float().std() * torch.randn(v.shape, generator=g)).contiguous()
            for k, v in sd.items()
            if k != "lm_head.weight"
        }
        # References: tied (lm_head = noisy embedding) and stale (lm_head = the old embedding).
        tied = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32).eval()
        tied.load_state_dict(noisy, strict=False)
        stale = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32).eval()
        stale.lm_head.weight = torch.nn.Parameter(sd[emb].clone())
        stale.load_state_dict(noisy, strict=False)
        work = Path(tempfile.mkdtemp(prefix="vllm-probe-reload-"))

        def save(name: str, tensors: dict[str, torch.Tensor]) -> str:
            d = work / name
            d.mkdir()
            save_file(tensors, str(d / "model.safetensors"))
            return str(d)

        orig_dir = save("original_with_lm_head", {**sd, "lm_head.weight": sd[emb].clone()})
        try:
            for name, tensors in (
                ("without_lm_head", noisy),
                ("with_lm_head", {**noisy, "lm_head.weight": noisy[emb].clone()}),
            ):
                d = save(name, tensors)
                st, body, dt = self.rpc("reload_weights", weights_path=d)
                emit(
                    "VALUE",
                    f"reload.{name}",
                    f"dir holds only model.safetensors; status={st} secs={dt:.2f} body={body!r}",
                )
                for p in prompts:
                    c = self.complete(self.body(p, max_tokens=32))
                    h = self.hf_greedy(p, 32, model=tied)
                    emit(
                        "VALUE",
                        f"reload.{name}.vs_hf",
                        f"greedy_eq_tied={c['token_ids'] == h} max_lp_diff_vs_tied={self.lp_diff(tied, p, c):.2e} "
                        f"max_lp_diff_vs_stale_lm_head={self.lp_diff(stale, p, c):.2e}",
                    )
                # Put the original back between variants so each starts from the same state.
                self.rpc("reload_weights", weights_path=orig_dir)
            self._reload_in_flight(
                prompts[0], save("in_flight", {**noisy, "lm_head.weight": noisy[emb].clone()})
            )
            if self.destructive:
                # A failed reload leaves the model half-loaded: the next request kills the engine.
                # Non-HF names: strip the leading "model." prefix.
                d = save("renamed", {k.removeprefix("model."): v for k, v in noisy.items()})
                st, body, dt = self.rpc("reload_weights", weights_path=d)
                emit("VALUE", "reload.non_hf_names", f"status={st} secs={dt:.2f} body={body[:200]!r}")
                c = httpx.post(
                    self.base + "/v1/completions", json=self.body(prompts[0], max_tokens=32), timeout=600
                )
                ok = c.status_code == 200 and c.json()["choices"][0]["token_ids"] == before[0]["token_ids"]
                emit("VALUE", "reload.after_failed_reload", f"status={c.status_code} greedy_unchanged={ok}")
                empty = work / "empty"
                empty.mkdir()
                st, body, dt = self.rpc("reload_weights", weights_path=str(empty))
                emit("VALUE", "reload.empty_dir", f"status={st} secs={dt:.2f} body={body[:200]!r}")
        finally:
            st, body, dt = self.rpc("reload_weights", weights_path=orig_dir)
            emit("VALUE", "reload.restore_original_with_lm_head", f"status={st} secs={dt:.2f} body={body!r}")
            for p, b in zip(prompts, before, strict=True):
                a = self.complete(self.body(p, max_tokens=32))
                same = b["token_ids"] == a["token_ids"]
                d_lp = max(
                    abs(x - y)
                    for x, y in zip(
                        b["logprobs"]["token_logprobs"], a["logprobs"]["token_logprobs"], strict=False
                    )
                )
                check(
                    "reload.restore_identical",
                    same and d_lp == 0.0,
                    f"ids_equal={same} max_lp_diff={d_lp:.2e}",
                )
            shutil.rmtree(work, ignore_errors=True)

    def _reload_in_flight(self, prompt: list[int], path: str) -> None:
        results: list[Any] = []

        def long_request() -> None:
            try:
                r = httpx.post(
                    self.base + "/v1/completions",
                    json=self.body(prompt, max_tokens=400, ignore_eos=True),
                    timeout=600,
                )
                c = r.json()["choices"][0]
                results.append((r.status_code, c["finish_reason"], len(c["token_ids"])))
            except Exception as e:  # we report whatever happens
                results.append(repr(e))

        th = threading.Thread(target=long_request)
        th.start()
        time.sleep(1.5)
        st, _body, dt = self.rpc("reload_weights", weights_path=path)
        th.join()
        emit("VALUE", "reload.in_flight", f"reload status={st} secs={dt:.2f}; request -> {results}")

    # ---- 8 -------------------------------------------------------------------------------

    def lora(self) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        work = Path(tempfile.mkdtemp(prefix="vllm-probe-lora-"))
        try:
            dirs = []
            peft_models = []
            for seed in (1, 2):
                base = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
                pm = get_peft_model(
                    base,
                    LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
                )
                g = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    for n, prm in pm.named_parameters():
                        if "lora_B" in n:
                            prm.copy_(0.05 * torch.randn(prm.shape, generator=g))
                d = work / f"a{seed}"
                pm.save_pretrained(str(d))
                pm.eval()
                dirs.append(d)
                peft_models.append(pm)
            emit("VALUE", "lora.adapter_files", sorted(x.name for x in dirs[0].iterdir()))
            t0 = time.perf_counter()
            r = self.http.post("/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(dirs[0])})
            emit(
                "VALUE",
                "lora.load",
                f"status={r.status_code} secs={time.perf_counter() - t0:.2f} body={r.text[:200]!r}",
            )
            emit("VALUE", "lora.v1_models", [m["id"] for m in self.http.get("/v1/models").json()["data"]])
            for q in CHAT_PROMPTS[:3]:
                p = self.chat_ids(q)
                c = self.complete({**self.body(p, max_tokens=48), "model": "a1"})
                v, lps = self.ids_and_lps(c)
                h = self.hf_greedy(p, 48, model=peft_models[0])
                base_ids = self.greedy_ids(p, 48)
                with torch.no_grad():
                    z = peft_models[0](torch.tensor([p + v])).logits[0, len(p) - 1 : len(p) - 1 + len(v)]
                ref = torch.log_softmax(z, -1)[torch.arange(len(v)), torch.tensor(v)]
                d = (ref - torch.tensor(lps)).abs().max().item()
                check(
                    f"lora.greedy_eq_peft[{q!r}]",
                    v == h,
                    f"n={len(v)}/{len(h)} differs_from_base={v != base_ids} max_lp_diff={d:.2e}",
                )
            t0 = time.perf_counter()
            r = self.http.post("/v1/load_lora_adapter", json={"lora_name": "a2", "lora_path": str(dirs[1])})
            emit(
                "VALUE",
                "lora.load_second_name",
                f"status={r.status_code} secs={time.perf_counter() - t0:.2f} body={r.text[:200]!r}",
            )
            p = self.chat_ids(CHAT_PROMPTS[0])
            v2 = self.greedy_ids(p, 48, model="a2")
            check("lora.second_adapter_eq_peft", v2 == self.hf_greedy(p, 48, model=peft_models[1]))
            r = self.http.post("/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(dirs[1])})
            emit("VALUE", "lora.load_same_name_again", f"status={r.status_code} body={r.text[:300]!r}")
            emit(
                "VALUE",
                "lora.a1_after_same_name_reload_is",
                "a1-weights"
                if self.greedy_ids(p, 48, model="a1") == self.hf_greedy(p, 48, model=peft_models[0])
                else "other",
            )
            r = self.http.post("/v1/unload_lora_adapter", json={"lora_name": "a1"})
            emit("VALUE", "lora.unload", f"status={r.status_code} body={r.text[:200]!r}")
            r = self.http.post("/v1/completions", json={**self.body(p, max_tokens=8), "model": "a1"})
            emit("VALUE", "lora.request_after_unload", f"status={r.status_code} body={r.text[:200]!r}")
            r = self.http.post("/v1/load_lora_adapter", json={"lora_name": "a1", "lora_path": str(dirs[0])})
            emit("VALUE", "lora.reload_after_unload", f"status={r.status_code}")
            check(
                "lora.reloaded_a1_eq_peft",
                self.greedy_ids(p, 48, model="a1") == self.hf_greedy(p, 48, model=peft_models[0]),
            )
            for name in ("a1", "a2"):
                self.http.post("/v1/unload_lora_adapter", json={"lora_name": name})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ---- 9 -------------------------------------------------------------------------------

    def pause(self) -> None:
        emit("VALUE", "pause.is_paused_initial", self.http.get("/is_paused").text)
        p = self.chat_ids(CHAT_PROMPTS[3])
        for mode in ("abort", "wait", "keep"):
            results: list[Any] = []

            def long_request(results: list[Any] = results) -> None:
                t0 = time.perf_counter()
                r = httpx.post(
                    self.base + "/v1/completions",
                    json=self.body(p, max_tokens=300, ignore_eos=True),
                    timeout=600,
                )
                try:
                    c = r.json()["choices"][0]
                    results.append(
                        (
                            r.status_code,
                            c["finish_reason"],
                            len(c["token_ids"]),
                            round(time.perf_counter() - t0, 2),
                        )
                    )
                except Exception:  # report the body as is
                    results.append((r.status_code, r.text[:200]))

            th = threading.Thread(target=long_request)
            th.start()
            time.sleep(1.5)
            t0 = time.perf_counter()
            r = self.http.post("/pause", params={"mode": mode})
            t_pause = time.perf_counter() - t0
            paused = self.http.get("/is_paused").text
            # A request submitted while paused: does it queue or fail?
            new: list[Any] = []

            def new_request(new: list[Any] = new) -> None:
                t1 = time.perf_counter()
                rr = httpx.post(self.base + "/v1/completions", json=self.body(p, max_tokens=4), timeout=600)
                new.append((rr.status_code, round(time.perf_counter() - t1, 2)))

            th2 = threading.Thread(target=new_request)
            th2.start()
            time.sleep(2.0)
            new_done_while_paused = bool(new)
            rr = self.http.post("/resume")
            th.join()
            th2.join()
            emit(
                "VALUE",
                f"pause.mode={mode}",
                f"pause status={r.status_code} body={r.text!r} pause_secs={t_pause:.2f} is_paused={paused}; "
                f"in-flight -> {results}; new request done while paused={new_done_while_paused} -> {new}; "
                f"resume={rr.status_code} {rr.text!r}",
            )
        emit("VALUE", "pause.is_paused_final", self.http.get("/is_paused").text)

    # ---- 10 ------------------------------------------------------------------------------

    def metric(self, name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(name):
                key, _, val = line.rpartition(" ")
                out[key] = float(val)
        return out

    def cancel(self) -> None:
        p = self.chat_ids(CHAT_PROMPTS[3])
        before = self.metric("vllm:request_success_total")
        gen_before = sum(self.metric("vllm:generation_tokens_total").values())
        try:
            httpx.post(
                self.base + "/v1/completions",
                json=self.body(p, max_tokens=1500, ignore_eos=True),
                timeout=2.0,
            )
        except httpx.TimeoutException:
            pass
        time.sleep(1.0)
        running = self.metric("vllm:num_requests_running")
        gen1 = sum(self.metric("vllm:generation_tokens_total").values())
        time.sleep(3.0)
        gen2 = sum(self.metric("vllm:generation_tokens_total").values())
        after = self.metric("vllm:request_success_total")
        diff = {
            re.sub(r".*finished_reason=\"(\w+)\".*", r"\1", k): v - before.get(k, 0.0)
            for k, v in after.items()
            if v != before.get(k, 0.0)
        }
        emit("VALUE", "cancel.num_requests_running_1s_after_disconnect", running)
        emit(
            "VALUE",
            "cancel.generation_tokens",
            f"during={gen1 - gen_before:.0f} in_next_3s={gen2 - gen1:.0f}",
        )
        emit("VALUE", "cancel.request_success_total_delta", diff)
        check("cancel.server_stops_generating", gen2 - gen1 == 0 and sum(running.values()) == 0)

    # ---- 12 ------------------------------------------------------------------------------

    def throughput(self, model: str | None = None, n: int = 8, tokens: int = 64) -> None:
        bodies = [
            {
                **self.body(
                    self.chat_ids(CHAT_PROMPTS[i % 4]),
                    max_tokens=tokens,
                    ignore_eos=True,
                    temperature=1.0,
                    seed=i,
                ),
                "model": model or self.served,
            }
            for i in range(n)
        ]
        self.complete(bodies[0] | {"max_tokens": 4})  # warm-up
        t0 = time.perf_counter()
        outs = asyncio.run(self._concurrent(bodies))
        dt = time.perf_counter() - t0
        ntok = sum(len(o["token_ids"]) for o in outs)
        emit(
            "VALUE",
            f"throughput[{model or 'base'}] {n}x{tokens}",
            f"{ntok} tokens in {dt:.2f}s = {ntok / dt:.1f} tok/s",
        )
        t0 = time.perf_counter()
        o = self.complete(bodies[0])
        dt = time.perf_counter() - t0
        emit("VALUE", f"throughput[{model or 'base'}] 1x{tokens}", f"{len(o['token_ids']) / dt:.1f} tok/s")


def rss_tree(pid: int) -> int:
    """Resident memory (KiB) of pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(q, []))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument(
        "--served-model", default=None, help="model name for requests (default: first of /v1/models)"
    )
    ap.add_argument("--only", default="fields,stop,logprobs,greedy,seeds,context,cancel,throughput")
    ap.add_argument("--server-pid", type=int, default=None, help="for the rss section")
    ap.add_argument(
        "--destructive", action="store_true", help="reload: also try bad reloads (they can kill the server)"
    )
    ap.add_argument("--lora-name", default=None, help="throughput with this loaded adapter too")
    a = ap.parse_args()
    pr = Probe(a.base_url, a.model_dir, a.served_model, a.destructive)
    for sec in a.only.split(","):
        sec = sec.strip()
        emit("VALUE", "section", sec)
        if sec == "rss":
            if a.server_pid:
                emit("VALUE", "rss.server_tree_MiB", f"{rss_tree(a.server_pid) / 1024:.0f}")
            continue
        try:
            getattr(pr, sec)()
        except Exception as e:  # one broken section must not hide the others
            emit("FAIL", f"{sec}.exception", repr(e)[:500])


if __name__ == "__main__":
    main()
