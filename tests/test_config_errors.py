"""Every configuration mistake a user commonly makes ends `ajet debug` and `ajet train` with one clear line that
names the field and the fix, never a Python traceback, and before any model loads.

Each case runs the real command line in a subprocess. The cases fail in well under two seconds each (no model
is loaded), and they run in parallel, so the whole module takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

FLOW = """
from ajet import Workflow, WorkflowOutput


class Flow(Workflow):
    turns: int = 1

    async def execute(self, workflow_task, tuner):
        return WorkflowOutput(reward=0.0)


def make_tasks(n: int = 2):
    return [{"main_query": str(i)} for i in range(n)]
"""
BASE = "workflow: flow.py:Flow\ndata: {train: t.jsonl}\nstore: memory\n"
BOTH = ("debug", "train")  # issue 9 item 13's mistakes go through both commands; the others through debug


@dataclass(frozen=True)
class Case:
    """A config (written to config.yaml beside flow.py and t.jsonl), the CLI arguments after `-c CONFIG`, and
    the fragments the message must hold: the field, and the fix."""

    config: str
    expect: tuple[str, ...]
    args: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("debug",)
    env: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    # -- issue 9 item 13 --------------------------------------------------------------------------------------
    # -- issue 10: engine.kind vllm -------------------------------------------------------------------------
    "vllm with neither base_url nor launch": Case(
        BASE + "engine: {kind: vllm}\n",
        ("engine", "base_url", "launch", "python"),
        commands=BOTH,
    ),
    "vllm launch without python or command": Case(
        BASE + "engine: {kind: vllm, launch: {max_model_len: 2048}}\n",
        ("engine.launch", "python", "scripts/setup-vllm-cpu.sh"),
        commands=BOTH,
    ),
    "vllm launch python missing": Case(
        BASE + "engine: {kind: vllm, launch: {python: /nope/bin/python}}\n",
        ("engine.launch.python", "/nope/bin/python", "not found", "setup-vllm-cpu.sh"),
        commands=BOTH,
    ),
    "unknown weight sync": Case(
        BASE + "engine: {weight_sync: vllm_relaod}\n",
        ("engine.weight_sync", "vllm_relaod", "vllm_reload"),
        commands=("train",),
    ),
    "launch on another engine kind": Case(
        BASE + "engine: {kind: transformers, launch: {python: /usr/bin/python3}}\n",
        ("launch", "kind: vllm"),
        commands=BOTH,
    ),
    "model path missing": Case(
        BASE + "model: {path: /nope}\n",
        ("model.path", "/nope", "a .gguf file", "smollm2-135m-instruct"),
        commands=BOTH,
    ),
    "model shorthand, relative path missing": Case(
        BASE + "model: ./models/nope\n", ("model.path", "relative to the working directory")
    ),
    "hub model id offline": Case(
        BASE + "model: {path: some-org/no-such-model}\n",
        (
            "model.path",
            "'some-org/no-such-model' is not a local path",
            "HF_HUB_OFFLINE",
            "local model directory",
        ),
        env={"HF_HUB_OFFLINE": "1"},
        commands=BOTH,
    ),
    "hub model id not downloadable": Case(  # passes the check (it may download), then fails the download
        BASE + "model: {path: some-org/no-such-model}\n",
        (
            "model.path",
            "could not find model 'some-org/no-such-model'",
            "not a local path",
            "local model directory",
        ),
    ),
    "data file missing (shorthand)": Case(
        "workflow: flow.py:Flow\ndata: {train: missing.jsonl}\n",
        ("data.train.path", "missing.jsonl not found", "relative to"),
        commands=BOTH,
    ),
    "data file missing (kind: file)": Case(
        "workflow: flow.py:Flow\ndata: {train: {kind: file, path: missing.jsonl}}\n",
        ("data.train.path", "missing.jsonl not found"),
        commands=BOTH,
    ),
    "data file missing (no kind)": Case(
        "workflow: flow.py:Flow\ndata: {train: {path: missing.csv}}\n",
        ("data.train.path", "missing.csv not found"),
    ),
    "hub dataset id (shorthand)": Case(
        "workflow: flow.py:Flow\ndata: {train: openai/gsm8k}\n",
        (
            "data.train.path",
            "hub dataset id",
            "not a local file or dataset",
            "network",
            "save_to_disk",
            "local",
        ),
        commands=BOTH,
    ),
    "hub dataset id (kind: hf_dataset)": Case(
        "workflow: flow.py:Flow\ndata: {train: {kind: hf_dataset, path: openai/gsm8k}}\n",
        ("data.train.path", "hub dataset id", "kind: hf_dataset, path: gsm8k"),
        commands=BOTH,
    ),
    "generator file missing": Case(
        "workflow: flow.py:Flow\ndata: {train: {kind: generator, function: gen.py:make_tasks}}\n",
        ("data.train.function", "gen.py", "not found"),
    ),
    "generator misspelled": Case(
        "workflow: flow.py:Flow\ndata: {train: flow.py:make_taks}\n",
        ("data.train.function", "no attribute 'make_taks'", "make_tasks"),
    ),
    "generator kwargs": Case(
        "workflow: flow.py:Flow\ndata: {train: {function: flow.py:make_tasks, kwargs: {m: 3}}}\n",
        ("data.train.kwargs", "unexpected keyword argument 'm'"),
    ),
    "framework misspelled": Case(
        BASE + "framework: langchian\n",
        ("framework", "'langchian'", "did you mean 'langchain'?", "installed adapters", "openai_sdk"),
        commands=BOTH,
    ),
    "bracket text survives rich": Case(
        BASE + "trainable_targets: werewolf\n", ("trainable_targets", "e.g. [werewolf]"), commands=BOTH
    ),
    "set inside the workflow shorthand": Case(
        BASE,
        ("workflow.args", "turns", "valid integer"),
        args=("--set", "workflow.args.turns=many"),
        commands=BOTH,
    ),
    # -- other common mistakes --------------------------------------------------------------------------------
    "config file missing": Case("", ("config file not found", "nope.yaml"), args=("-c", "nope.yaml")),
    "config is a directory": Case("", ("is a directory", "config.yaml"), args=("-c", ".")),
    "empty config": Case("", ("is empty", "workflow:")),
    "YAML syntax": Case("workflow: [flow.py:Flow\n", ("not valid YAML", "line 2", "expected ',' or ']'")),
    "YAML tabs": Case(
        "workflow: flow.py:Flow\nrollout:\n\tgroup_size: 2\n", ("line 3", "indent with spaces")
    ),
    "top level not a mapping": Case("- workflow: flow.py:Flow\n", ("mapping of settings at the top level",)),
    "not UTF-8": Case(
        "workflow: fl\udcffow.py:Flow\n", ("not a UTF-8 text file", "save the config as UTF-8")
    ),
    "judger misspelled": Case(
        BASE + "judger: numeric_matc\n", ("judger.path", "did you mean 'numeric_match'?", "module:fn")
    ),
    "judger file missing": Case(BASE + "judger: judge.py:score\n", ("judger.path", "judge.py", "not found")),
    "engine misspelled": Case(
        BASE + "engine: {kind: transfomers}\n", ("engine.kind", "did you mean 'transformers'?", "openai")
    ),
    "tool parser misspelled": Case(
        BASE + "gateway: {tool_parser: herms}\n", ("gateway.tool_parser", "did you mean 'hermes'?")
    ),
    "device not a device": Case(BASE + "model: {device: gpu}\n", ("model.device", "'gpu'", "'cuda:N'")),
    "device absent": Case(BASE + "model: {device: 'cuda:99'}\n", ("model.device", "'cuda:99'")),
    "store is a directory": Case(
        "workflow: flow.py:Flow\ndata: {train: t.jsonl}\nstore: .\n", ("store", "is a directory", "memory")
    ),
    "wrong type in --set": Case(
        BASE, ("train.steps", "valid integer", "you wrote 'ten'"), args=("--set", "train.steps=ten")
    ),
    "bad YAML in --set": Case(BASE, ("--set", "not valid YAML", "quote it"), args=("--set", "name=[a")),
    "empty field in --set": Case(BASE, ("--set", "empty field name"), args=("--set", "train..steps=1")),
    "sft without demonstrations": Case(
        BASE + "train: {algorithm: sft}\n", ("train.demonstrations", "ajet debug --out"), commands=("train",)
    ),
    "sft demonstrations missing": Case(
        BASE + "train: {algorithm: sft, demonstrations: demos.jsonl}\n",
        ("train.demonstrations", "demos.jsonl not found"),
        commands=("train",),
    ),
}


def _run(name: str, command: str, root: Path) -> subprocess.CompletedProcess[str]:
    case = CASES[name]
    where = root / f"{list(CASES).index(name)}-{command}"
    where.mkdir()
    (where / "flow.py").write_text(FLOW, encoding="utf-8")
    (where / "t.jsonl").write_text('{"main_query": "1+1", "label": "2"}\n', encoding="utf-8")
    # surrogateescape writes the lone \udcff of the "not UTF-8" case as the raw byte 0xff.
    (where / "config.yaml").write_bytes(case.config.encode("utf-8", "surrogateescape"))
    args = case.args if "-c" in case.args else ("-c", "config.yaml", *case.args)
    if command == "train":
        args = (*args, "--run-dir", str(where / "run"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), **case.env}
    return subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", command, *args],
        capture_output=True,
        text=True,
        cwd=where,
        env=env,
        timeout=300,
    )


RUNS = [(name, command) for name, case in CASES.items() for command in case.commands]


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every case's run, started together (each is a short-lived process that fails fast)."""
    root = tmp_path_factory.mktemp("config-errors")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {run: pool.submit(_run, *run, root) for run in RUNS}
        return {run: future.result() for run, future in futures.items()}


@pytest.mark.parametrize(("name", "command"), RUNS, ids=[f"{command}: {name}" for name, command in RUNS])
def test_mistake_gets_one_clear_line(
    name: str, command: str, outcomes: dict[tuple[str, str], subprocess.CompletedProcess[str]]
) -> None:
    result = outcomes[(name, command)]
    shown = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 2, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.stdout.startswith("configuration error: "), shown
    message = result.stdout.removeprefix("configuration error: ")
    for fragment in CASES[name].expect:
        assert fragment in message, f"{fragment!r} missing from the message\n{shown}"
    if "problem(s) in the configuration" not in message:  # validation lists each problem on its own line
        assert message.count("\n") == 1, f"expected one line\n{shown}"


RAISING_FLOW = """
from ajet import Workflow


class Flow(Workflow):
    async def execute(self, workflow_task, tuner):
        raise ValueError("trainable_targets must name agents, e.g. [werewolf, seer]")
"""


def test_episode_errors_and_task_ids_keep_their_brackets(
    tmp_path: Path, tiny_model_and_tokenizer: tuple[object, object]
) -> None:
    """What `ajet debug` prints from user data (a task id, an episode's error) is shown as written: rich markup
    would print `[werewolf, seer]` as nothing and `[1]` as an empty cell."""
    model, tokenizer = tiny_model_and_tokenizer
    model.save_pretrained(tmp_path / "tiny")  # type: ignore[attr-defined]
    tokenizer.save_pretrained(tmp_path / "tiny")  # type: ignore[attr-defined]
    (tmp_path / "flow.py").write_text(RAISING_FLOW, encoding="utf-8")
    (tmp_path / "t.jsonl").write_text('{"task_id": "[1]", "main_query": "hi"}\n', encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        f"workflow: flow.py:Flow\nmodel: {tmp_path / 'tiny'}\ndata: {{train: t.jsonl}}\nstore: memory\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", "debug", "-c", "config.yaml", "-g", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        timeout=300,
    )
    shown = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, shown
    assert "e.g. [werewolf, seer]" in result.stdout, shown  # the episode's error, under the table
    assert "[1]#0 failed" in result.stdout, shown
    assert "│ [1]" in result.stdout, shown  # the table's task cell
