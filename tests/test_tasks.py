"""Task sources (files, local `datasets` datasets, generator functions) and object references."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from ajet.core.tasks import (
    FieldMap,
    FileTasks,
    GeneratorTasks,
    HFDatasetTasks,
    TaskSourceError,
    TaskSourceSpec,
    import_object,
    load_tasks,
)
from ajet.core.types import LabeledTask

ROWS = [
    {"id": 101, "question": "What is 2 + 3?", "answer": "5", "source": "gsm", "level": 1},
    {"id": 102, "question": "What is 7 + 1?", "answer": "8", "source": "gsm", "level": 2},
    {"id": 103, "question": "What is 4 + 4?", "answer": "8", "source": "mathqa", "level": 1},
]
QA_FIELDS = {"task_id": "id", "main_query": "question", "label": "answer"}


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # import_object makes a loaded file's directory importable; keep that from leaking between tests.
    monkeypatch.setattr(sys, "path", list(sys.path))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_py(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


# -- files ---------------------------------------------------------------------------------------------------


def test_jsonl_with_field_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n   \n")  # blank lines are skipped
    tasks = load_tasks({"kind": "file", "path": "train.jsonl", "fields": QA_FIELDS}, tmp_path)
    assert tasks[0] == LabeledTask(
        task_id="101", main_query="What is 2 + 3?", label="5", metadata={"source": "gsm", "level": 1}
    )
    assert [t.task_id for t in tasks] == ["101", "102", "103"]


def test_json_array_with_default_fields_numbers_rows(tmp_path: Path) -> None:
    rows = [{"main_query": f"q{i}", "label": i, "extra": [i]} for i in range(3)]
    (tmp_path / "tasks.json").write_text(json.dumps(rows), encoding="utf-8")
    tasks = load_tasks(FileTasks(path=Path("tasks.json")), tmp_path)
    assert [(t.task_id, t.main_query, t.label, t.metadata) for t in tasks] == [
        ("0", "q0", 0, {"extra": [0]}),
        ("1", "q1", 1, {"extra": [1]}),
        ("2", "q2", 2, {"extra": [2]}),
    ]


def test_parquet_with_metadata_subset(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "train.parquet")
    spec = FileTasks(path=tmp_path / "train.parquet", fields=FieldMap(**QA_FIELDS, metadata=["level"]))
    tasks = spec.load()  # absolute path: no base_dir needed
    assert [(t.task_id, t.label, t.metadata) for t in tasks] == [
        ("101", "5", {"level": 1}),
        ("102", "8", {"level": 2}),
        ("103", "8", {"level": 1}),
    ]


def test_csv_values_are_strings(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    # utf-8-sig: the byte-order mark Excel writes must not end up in the first column's name.
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    tasks = load_tasks({"kind": "file", "path": "train.csv", "fields": QA_FIELDS}, tmp_path)
    assert tasks[1] == LabeledTask(
        task_id="102", main_query="What is 7 + 1?", label="8", metadata={"source": "gsm", "level": "2"}
    )


def test_explicit_format_and_unknown_extension(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "tasks.txt", [{"main_query": "hi"}])
    assert (
        load_tasks({"kind": "file", "path": "tasks.txt", "format": "jsonl"}, tmp_path)[0].main_query == "hi"
    )
    with pytest.raises(TaskSourceError, match="set format: jsonl, json, parquet or csv"):
        load_tasks({"kind": "file", "path": "tasks.txt"}, tmp_path)


def test_dumped_tasks_load_back_unchanged(tmp_path: Path) -> None:
    tasks = [
        LabeledTask(task_id="a", main_query="q1", label={"answer": 1}, metadata={"topic": "x"}),
        LabeledTask(task_id="b", main_query="q2", label=None, metadata={}),
    ]
    write_jsonl(tmp_path / "dump.jsonl", [t.model_dump() for t in tasks])
    assert load_tasks({"kind": "file", "path": "dump.jsonl"}, tmp_path) == tasks


def test_label_none_keeps_label_column_as_metadata(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"main_query": "q", "label": "L"}])
    [task] = load_tasks({"kind": "file", "path": "t.jsonl", "fields": {"label": None}}, tmp_path)
    assert task.label is None and task.metadata == {"label": "L"}


def test_limit_and_shuffle_are_deterministic(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"main_query": f"q{i}"} for i in range(50)])

    def ids(**options: Any) -> list[str]:
        return [t.task_id for t in load_tasks({"kind": "file", "path": "t.jsonl", **options}, tmp_path)]

    assert ids(limit=5) == ["0", "1", "2", "3", "4"]
    shuffled = ids(shuffle=True, seed=1)
    assert shuffled == ids(shuffle=True, seed=1) and shuffled != ids() and sorted(shuffled) == sorted(ids())
    assert shuffled != ids(shuffle=True, seed=2)
    assert ids(shuffle=True, seed=1, limit=7) == shuffled[:7]
    # Generated ids follow the row, not the position after shuffling.
    tasks = load_tasks({"kind": "file", "path": "t.jsonl", "shuffle": True}, tmp_path)
    assert all(t.main_query == f"q{t.task_id}" for t in tasks)


# -- file errors ---------------------------------------------------------------------------------------------


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"main_query": "ok"}\n\n{"main_query": oops}\n', encoding="utf-8")
    with pytest.raises(TaskSourceError, match=r"t\.jsonl line 3: not valid JSON"):
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)
    (tmp_path / "t.jsonl").write_text('{"main_query": "ok"}\n["a list"]\n', encoding="utf-8")
    with pytest.raises(TaskSourceError, match=r"line 2: expected a JSON object, got list"):
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)


def test_missing_main_query_column_lists_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", ROWS)
    with pytest.raises(TaskSourceError) as info:
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)
    message = str(info.value)
    assert "no column 'main_query'" in message and "fields.main_query" in message
    assert "'question'" in message and "'answer'" in message


def test_missing_explicit_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", ROWS)
    spec = {"kind": "file", "path": "t.jsonl", "fields": {"main_query": "question", "label": "answr"}}
    with pytest.raises(TaskSourceError, match=r"no column 'answr' \(did you mean 'answer'\?\).*fields.label"):
        load_tasks(spec, tmp_path)
    spec["fields"] = {"main_query": "question", "metadata": ["level", "topic"]}
    with pytest.raises(TaskSourceError, match=r"no column 'topic'.*fields.metadata"):
        load_tasks(spec, tmp_path)
    # A row of a JSONL file without the column is named by its line.
    write_jsonl(tmp_path / "t.jsonl", [{"question": "a"}, {"prompt": "b"}])
    with pytest.raises(TaskSourceError, match=r"t\.jsonl line 2: no column 'question'"):
        load_tasks({"kind": "file", "path": "t.jsonl", "fields": {"main_query": "question"}}, tmp_path)


def test_bad_values(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"main_query": 42}])
    with pytest.raises(TaskSourceError, match=r"line 1: column 'main_query' \(fields.main_query\) holds int"):
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)
    write_jsonl(tmp_path / "t.jsonl", [{"main_query": "q", "task_id": None}])
    with pytest.raises(TaskSourceError, match="task id column 'task_id' holds None"):
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)
    (tmp_path / "t.csv").write_text("main_query,label\nq,1,extra\n", encoding="utf-8")
    with pytest.raises(TaskSourceError, match="line 2: more values than the header"):
        load_tasks({"kind": "file", "path": "t.csv"}, tmp_path)
    (tmp_path / "t.json").write_text('{"main_query": "q"}', encoding="utf-8")
    with pytest.raises(TaskSourceError, match="expected a JSON array of objects"):
        load_tasks({"kind": "file", "path": "t.json"}, tmp_path)


def test_duplicate_task_ids(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "t.jsonl", [{"task_id": "a", "main_query": "1"}, {"task_id": "a", "main_query": "2"}]
    )
    with pytest.raises(TaskSourceError, match=r"task id 'a' appears twice \(.*line 1 and .*line 2\)"):
        load_tasks({"kind": "file", "path": "t.jsonl"}, tmp_path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=f"{tmp_path / 'nope.jsonl'} not found.*relative to {tmp_path}"
    ):
        load_tasks({"kind": "file", "path": "nope.jsonl"}, tmp_path)
    with pytest.raises(TaskSourceError, match=r"is a directory; .*kind: hf_dataset"):
        load_tasks({"kind": "file", "path": "."}, tmp_path)


def test_spec_validation() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(TaskSourceSpec)
    assert isinstance(adapter.validate_python({"kind": "file", "path": "x.jsonl"}), FileTasks)
    assert isinstance(adapter.validate_python({"kind": "generator", "function": "m:f"}), GeneratorTasks)
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        adapter.validate_python({"kind": "url", "path": "x"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        adapter.validate_python({"kind": "file", "path": "x.jsonl", "fields": {"query": "q"}})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        adapter.validate_python({"kind": "file", "path": "x.jsonl", "limit": 0})


# -- local `datasets` datasets -------------------------------------------------------------------------------


@pytest.fixture
def datasets_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    datasets = pytest.importorskip("datasets")
    # load_dataset caches what it reads; keep that out of the home directory.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    yield datasets


def test_saved_dataset(tmp_path: Path, datasets_module: Any) -> None:
    datasets_module.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    tasks = load_tasks({"kind": "hf_dataset", "path": "saved", "fields": QA_FIELDS, "limit": 2}, tmp_path)
    assert [(t.task_id, t.label, t.metadata) for t in tasks] == [
        ("101", "5", {"source": "gsm", "level": 1}),
        ("102", "8", {"source": "gsm", "level": 2}),
    ]


def test_saved_dataset_dict_splits(tmp_path: Path, datasets_module: Any) -> None:
    full = datasets_module.Dataset.from_list(ROWS)
    datasets_module.DatasetDict({"train": full.select([0, 1]), "test": full.select([2])}).save_to_disk(
        str(tmp_path / "dd")
    )
    spec = HFDatasetTasks(path=Path("dd"), split="test", fields=FieldMap(**QA_FIELDS))
    assert [t.task_id for t in spec.load(tmp_path)] == ["103"]
    assert [
        t.task_id for t in load_tasks({"kind": "hf_dataset", "path": "dd", "fields": QA_FIELDS}, tmp_path)
    ] == [
        "101",
        "102",
    ]
    with pytest.raises(TaskSourceError, match="no split 'validation'; splits found: train, test"):
        load_tasks({"kind": "hf_dataset", "path": "dd", "split": "validation", "fields": QA_FIELDS}, tmp_path)


def test_load_dataset_from_data_files(tmp_path: Path, datasets_module: Any) -> None:
    (tmp_path / "raw").mkdir()
    write_jsonl(tmp_path / "raw" / "train.jsonl", [{"main_query": f"q{i}", "label": i} for i in range(3)])
    write_jsonl(tmp_path / "raw" / "test.jsonl", [{"main_query": "held out", "label": 9}])
    [task] = load_tasks({"kind": "hf_dataset", "path": "raw", "split": "test"}, tmp_path)
    assert (task.task_id, task.main_query, task.label) == ("0", "held out", 9)
    assert len(load_tasks({"kind": "hf_dataset", "path": "raw/train.jsonl"}, tmp_path)) == 3


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="local datasets only"):
        load_tasks({"kind": "hf_dataset", "path": "openai/gsm8k"}, tmp_path)


# -- generators ----------------------------------------------------------------------------------------------

ARITHMETIC = """
    import random
    from ajet.core.types import LabeledTask, Task

    def arithmetic(n: int, seed: int = 0, digits: int = 1):
        rng = random.Random(seed)
        for i in range(n):
            a, b = rng.randrange(10**digits), rng.randrange(10**digits)
            yield {"task_id": f"add-{i}", "main_query": f"What is {a} + {b}?", "label": a + b,
                   "metadata": {"a": a, "b": b}}

    def endless():
        i = 0
        while True:
            yield Task(task_id=f"t{i}", main_query=str(i))
            i += 1

    def mixed():
        return [LabeledTask(task_id="x", main_query="a", label=1), Task(task_id="y", main_query="b"),
                {"main_query": "c"}, {"main_query": "d", "task_id": 7}]
"""


def test_generator_from_file(tmp_path: Path) -> None:
    write_py(tmp_path / "gen.py", ARITHMETIC)
    spec = {"kind": "generator", "function": "gen.py:arithmetic", "kwargs": {"n": 20, "seed": 3}}
    tasks = load_tasks(spec, tmp_path)
    assert len(tasks) == 20 and tasks == load_tasks(spec, tmp_path)  # same seed, same tasks
    assert all(t.label == t.metadata["a"] + t.metadata["b"] for t in tasks)
    assert tasks[0].task_id == "add-0" and tasks[0].main_query.startswith("What is")
    assert load_tasks({**spec, "kwargs": {"n": 20, "seed": 4}}, tmp_path) != tasks


def test_generator_limit_stops_an_endless_generator(tmp_path: Path) -> None:
    write_py(tmp_path / "gen.py", ARITHMETIC)
    tasks = load_tasks({"kind": "generator", "function": "gen.py:endless", "limit": 3}, tmp_path)
    assert [(t.task_id, t.label) for t in tasks] == [("t0", None), ("t1", None), ("t2", None)]


def test_generator_item_types(tmp_path: Path) -> None:
    write_py(tmp_path / "gen.py", ARITHMETIC)
    tasks = load_tasks({"kind": "generator", "function": "gen.py:mixed"}, tmp_path)
    assert [(t.task_id, t.main_query, t.label) for t in tasks] == [
        ("x", "a", 1),
        ("y", "b", None),
        ("2", "c", None),
        ("7", "d", None),
    ]


def test_generator_from_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "ajet_test_taskgen_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    write_py(package / "arith.py", ARITHMETIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = GeneratorTasks(function="ajet_test_taskgen_pkg.arith:arithmetic", kwargs={"n": 4})
    assert [t.task_id for t in load_tasks(spec)] == ["add-0", "add-1", "add-2", "add-3"]


def test_generator_by_registered_name() -> None:
    def squares(n: int) -> list[dict[str, Any]]:
        return [{"main_query": f"{i}^2?", "label": i * i} for i in range(n)]

    spec = {"kind": "generator", "function": "squares", "kwargs": {"n": 3}}
    assert [t.label for t in load_tasks(spec, generators={"squares": squares})] == [0, 1, 4]
    with pytest.raises(TaskSourceError, match=r"not a reference .*\(registered: squares\)"):
        load_tasks({**spec, "function": "cubes"}, generators={"squares": squares})


def test_unknown_generator_name_checks_plugin_registry() -> None:
    # No `generators` given: the names registered through the `register_task_sources` hook are searched.
    with pytest.raises(
        TaskSourceError, match=r"'ajet-no-such-generator' is not a reference .*\(registered: "
    ):
        load_tasks({"kind": "generator", "function": "ajet-no-such-generator"})


def test_generator_errors(tmp_path: Path) -> None:
    write_py(
        tmp_path / "bad.py",
        """
        def needs_n(n: int):
            return [{"main_query": "q"}] * n

        def not_iterable():
            return 3

        def bad_item():
            yield {"main_query": "ok"}
            yield {"question": "no main_query"}

        def dup():
            return [{"task_id": "a", "main_query": "1"}, {"task_id": "a", "main_query": "2"}]

        async def is_async():
            return []

        VALUE = 5
        """,
    )

    def load(function: str, **kwargs: Any) -> list[LabeledTask]:
        return load_tasks({"kind": "generator", "function": f"bad.py:{function}", "kwargs": kwargs}, tmp_path)

    with pytest.raises(TaskSourceError, match=r"kwargs do not fit needs_n\(n: int\)"):
        load("needs_n", count=3)
    with pytest.raises(TaskSourceError, match="returned int; it must return or yield tasks"):
        load("not_iterable")
    with pytest.raises(TaskSourceError, match=r"item 1: .*main_query: Field required"):
        load("bad_item")
    with pytest.raises(TaskSourceError, match=r"task id 'a' appears twice \(item 0 and item 1\)"):
        load("dup")
    with pytest.raises(TaskSourceError, match="is async"):
        load("is_async")
    with pytest.raises(TaskSourceError, match="is 5, not a function"):
        load("VALUE")


# -- import_object -------------------------------------------------------------------------------------------


def test_import_object_from_module_and_file(tmp_path: Path) -> None:
    assert import_object("json:dumps") is json.dumps
    assert import_object("ajet.core.types:LabeledTask.without_label") is LabeledTask.without_label
    write_py(tmp_path / "ajet_test_beside.py", "FACTOR = 3\n")
    (tmp_path / "sub").mkdir()
    write_py(
        tmp_path / "sub" / "wf.py", "import helper_sibling\nclass Agent:\n    factor = helper_sibling.X\n"
    )
    write_py(tmp_path / "sub" / "helper_sibling.py", "X = 7\n")
    agent = import_object("sub/wf.py:Agent", tmp_path)
    assert agent.factor == 7  # type: ignore[attr-defined]
    assert import_object(f"{tmp_path / 'sub' / 'wf.py'}:Agent") is agent  # one module per file
    # "module:attr" falls back to module.py beside the config when no such module is installed.
    assert import_object("ajet_test_beside:FACTOR", tmp_path) == 3


def test_import_object_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an object reference"):
        import_object("json.dumps")
    with pytest.raises(ValueError, match="not an object reference"):
        import_object("json:")
    with pytest.raises(AttributeError, match="json has no attribute 'dumsp'; did you mean: dump, dumps"):
        import_object("json:dumsp")
    with pytest.raises(ImportError, match=r"no module named 'ajet_no_such_module'.*'path/to/file.py:name'"):
        import_object("ajet_no_such_module:thing", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing.py'} not found"):
        import_object("missing.py:thing", tmp_path)
    write_py(tmp_path / "broken.py", "def f(:\n")
    with pytest.raises(ImportError, match=r"importing .*broken.py failed: SyntaxError"):
        import_object("broken.py:f", tmp_path)
    write_py(tmp_path / "needs_dep.py", "import ajet_missing_dependency\n")
    with pytest.raises(ImportError, match="No module named 'ajet_missing_dependency'"):
        import_object("needs_dep.py:f", tmp_path)
    write_py(tmp_path / "wf.py", "class MathAgent: ...\nclass Judge: ...\n")
    with pytest.raises(AttributeError, match="has no attribute 'MathAgnet'; did you mean: MathAgent"):
        import_object("wf.py:MathAgnet", tmp_path)
    with pytest.raises(AttributeError, match="has no attribute 'Zebra'; it has: Judge, MathAgent"):
        import_object("wf.py:Zebra", tmp_path)
