"""Task sources: where the tasks of a run come from, as they are written in the config's `data:` section.

    data:
      train: {kind: file, path: train.jsonl, fields: {main_query: question, label: answer}}
      val:   {kind: hf_dataset, path: ./gsm8k_saved, split: test, limit: 200}
    # or    {kind: generator, function: "arith.py:make_tasks", kwargs: {n: 1000, seed: 0}}

`load_tasks(spec, base_dir)` turns any of them into `list[LabeledTask]`. Relative paths are resolved against
`base_dir` (the config file's directory). `import_object` resolves "module:attr" / "file.py:attr" references
for the rest of ajet too (the workflow class).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ajet.core.types import LabeledTask, Task

Row = tuple[str, Mapping[str, Any]]  # (where the row came from, for error messages; the row's columns)


class TaskSourceError(ValueError):
    """Task data that cannot become tasks; the message names the file, line or row, and the fix.

    `field` is the spec's setting at fault (`path`, `function`, `kwargs`) when there is one, so the caller can
    name it in full: `data.train.path: ...`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TaskDataNotFoundError(TaskSourceError, FileNotFoundError):
    """A data file or dataset directory that is not there (still a FileNotFoundError, as it always was)."""


class MissingPackageError(TaskSourceError, ImportError):
    """Reading this data needs a package that is not installed; the message says what to pip install."""


# A hub dataset id ("openai/gsm8k"): what a user copies from a model card and ajet cannot fetch.
_HUB_DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
# A bare string in `data.train:` names a file with one of these extensions; anything else, a dataset.
_TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")


def expand_source_shorthand(value: Any) -> Any:
    """What a user writes for a task source, as the full spec: `train.jsonl` -> `{kind: file, path: ...}`,
    `./saved_dataset` -> `{kind: hf_dataset, path: ...}`, `gen.py:make_tasks` -> `{kind: generator, ...}`;
    a mapping without `kind` gets the one its keys imply (`function` -> generator, a table file -> file,
    else hf_dataset). Anything else is returned as it is, for validation to explain."""
    if isinstance(value, str):
        value = {"function": value} if _is_reference(value) else {"path": value}
    if not isinstance(value, Mapping) or "kind" in value:
        return value
    if "function" in value:
        return {"kind": "generator", **value}
    path = value.get("path")
    if isinstance(path, str | Path):
        table = Path(path).suffix.lower() in _TABLE_SUFFIXES and "split" not in value
        return {"kind": "file" if table else "hf_dataset", **value}
    return value


def _is_reference(text: str) -> bool:
    module, colon, attr = text.rpartition(":")
    # "C:\\data\\x.jsonl" has a colon too; a reference's right side is a Python name.
    return bool(colon and module and attr.replace(".", "_").isidentifier() and len(module) > 1)


# ------------------------------------------------------------------------------------------------------------
# Specs (the config's `data.train` / `data.val`)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(_Spec):
    """Which column holds what. Columns not named here become the task's metadata (unless `metadata` lists
    which to keep)."""

    task_id: str | None = Field(
        None,
        description="column with the task id; default: the 'task_id' column if present, else the row number",
    )
    main_query: str = Field(
        "main_query", description="column with the query the agent is given, e.g. question"
    )
    label: str | None = Field(
        "label", description="column with the reference answer, e.g. answer; null for none"
    )
    metadata: list[str] | None = Field(
        None, description="columns to keep as metadata; default: every column not used above"
    )


class _TableSource(_Spec):
    fields: FieldMap = Field(default_factory=FieldMap, description="which column holds what")
    limit: int | None = Field(None, ge=1, description="keep at most this many tasks (after shuffling)")
    shuffle: bool = Field(False, description="shuffle the tasks (deterministically, with seed)")
    seed: int = Field(0, description="seed for shuffle")

    def _finish(self, rows: Iterable[Row], columns: list[str], source: str) -> list[LabeledTask]:
        tasks = rows_to_tasks(rows, columns, self.fields, source)
        if self.shuffle:
            random.Random(self.seed).shuffle(tasks)
        return tasks[: self.limit] if self.limit is not None else tasks


class FileTasks(_TableSource):
    """Tasks from a JSONL, JSON (an array of objects), Parquet or CSV file."""

    kind: Literal["file"] = "file"
    path: Path = Field(description="the data file, relative to the config file's directory")
    format: Literal["auto", "jsonl", "json", "parquet", "csv"] = Field(
        "auto", description="file format; 'auto' goes by the extension (.jsonl .json .parquet .csv)"
    )

    def check(self, base_dir: Path | None = None) -> Path:
        """The data file's path; raises now (before any model loads) if it is missing, a directory, of an
        unknown format, or needs a package that is not installed."""
        path = resolve_path(self.path, base_dir)
        if not path.exists():
            raise TaskDataNotFoundError(
                f"task file {path} not found (data path {str(self.path)!r}{_relative_to(base_dir)})"
                + _hub_hint(self.path),
                field="path",
            )
        if path.is_dir():
            raise TaskSourceError(
                f"{path} is a directory; for a saved `datasets` dataset use kind: hf_dataset", field="path"
            )
        fmt = self.format if self.format != "auto" else _format_from_suffix(path)
        if fmt == "parquet":
            _require("pyarrow", "reading Parquet")
        return path

    def load(self, base_dir: Path | None = None) -> list[LabeledTask]:
        path = self.check(base_dir)
        fmt = self.format if self.format != "auto" else _format_from_suffix(path)
        readers: dict[str, Callable[[Path], tuple[list[Row], list[str]]]] = {
            "jsonl": _read_jsonl,
            "json": _read_json,
            "parquet": _read_parquet,
            "csv": _read_csv,
        }
        rows, columns = readers[fmt](path)
        return self._finish(rows, columns, str(path))


class HFDatasetTasks(_TableSource):
    """Tasks from a local Hugging Face `datasets` dataset: a `save_to_disk` directory (Dataset or
    DatasetDict), or a directory or file of data that `datasets.load_dataset` reads. Never downloads."""

    kind: Literal["hf_dataset"] = "hf_dataset"
    path: Path = Field(description="a local dataset directory or data file, relative to the config file")
    split: str = Field("train", description="which split of a dataset with splits, e.g. train or test")

    def check(self, base_dir: Path | None = None) -> Path:
        """The dataset's path; raises now if it is missing, not something `datasets` reads, or `datasets` is
        not installed."""
        path = resolve_path(self.path, base_dir)
        if not path.exists():
            hint = _hub_hint(self.path) or (
                "; hf_dataset reads local datasets only: save one with dataset.save_to_disk(path) first"
            )
            raise TaskDataNotFoundError(
                f"dataset {path} not found (data path {str(self.path)!r}{_relative_to(base_dir)}){hint}",
                field="path",
            )
        if path.is_file() and path.suffix.lower() not in _DATASET_BUILDERS:
            raise TaskSourceError(
                f"{path}: not a dataset directory nor a .csv/.json/.jsonl/.parquet/.txt file", field="path"
            )
        _require("datasets", "kind: hf_dataset")
        return path

    def load(self, base_dir: Path | None = None) -> list[LabeledTask]:
        path = self.check(base_dir)
        dataset = _load_local_dataset(path, self.split)
        source = f"{path} [{self.split}]"
        rows = [(f"{source} row {i}", row) for i, row in enumerate(dataset.to_list())]
        return self._finish(rows, list(dataset.column_names), source)


class GeneratorTasks(_Spec):
    """Tasks made by a function: `function(**kwargs)` returns or yields LabeledTask, Task or dicts
    (keys: main_query, and optionally task_id, label, metadata)."""

    kind: Literal["generator"] = "generator"
    function: str = Field(
        description="'package.module:fn', 'path/to/file.py:fn', or the name of a generator a plugin registers"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the function")
    limit: int | None = Field(
        None, ge=1, description="take at most this many tasks (stops an endless generator)"
    )

    def check(
        self, base_dir: Path | None = None, generators: Mapping[str, Callable[..., Any]] | None = None
    ) -> Callable[..., Any]:
        """The generator function, with `kwargs` checked against its signature; raises now if it cannot be
        found or called so. Imports the function's module (once: later imports reuse it)."""
        fn = self._function(base_dir, generators)
        if not callable(fn):
            raise TaskSourceError(f"generator {self.function!r} is {fn!r}, not a function", field="function")
        try:
            inspect.signature(fn).bind(**self.kwargs)
        except TypeError as exc:
            raise TaskSourceError(
                f"generator {self.function!r}: kwargs do not fit {_signature(fn)}: {exc}", field="kwargs"
            ) from None
        except ValueError:  # some builtins have no signature; let the call itself complain
            pass
        return fn

    def load(
        self, base_dir: Path | None = None, generators: Mapping[str, Callable[..., Any]] | None = None
    ) -> list[LabeledTask]:
        fn = self.check(base_dir, generators)
        produced = fn(**self.kwargs)
        if inspect.iscoroutine(produced) or inspect.isasyncgen(produced):
            if inspect.iscoroutine(produced):
                produced.close()  # avoid a "never awaited" warning
            raise TaskSourceError(
                f"generator {self.function!r} is async; make it a plain function or generator"
            )
        if isinstance(produced, str | bytes | Mapping | BaseModel) or not isinstance(produced, Iterable):
            raise TaskSourceError(
                f"generator {self.function!r} returned {type(produced).__name__}; "
                "it must return or yield tasks"
            )
        items = islice(produced, self.limit) if self.limit is not None else produced
        tasks = [_coerce_task(item, i, self.function) for i, item in enumerate(items)]
        _check_unique(tasks, [f"item {i}" for i in range(len(tasks))], f"generator {self.function!r}")
        return tasks

    def _function(self, base_dir: Path | None, generators: Mapping[str, Callable[..., Any]] | None) -> Any:
        if ":" in self.function:
            try:
                return import_object(self.function, base_dir)
            except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
                raise TaskSourceError(str(exc), field="function") from exc
        if generators is None:
            from ajet.core.plugins import load_registry  # only a plugin-registered name needs plugins loaded

            generators = {name: r.value for name, r in load_registry().task_sources.items()}
        if self.function not in generators:
            known = ", ".join(sorted(generators)) or "none"
            close = difflib.get_close_matches(self.function, list(generators), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskSourceError(
                f"generator function {self.function!r} is not a reference ('package.module:fn' or "
                f"'path/to/file.py:fn') nor a registered task generator (registered: {known}){hint}",
                field="function",
            )
        return generators[self.function]


TaskSource = FileTasks | HFDatasetTasks | GeneratorTasks
TaskSourceSpec = Annotated[TaskSource, Field(discriminator="kind")]
_SPEC_ADAPTER: TypeAdapter[TaskSource] = TypeAdapter(TaskSourceSpec)


def load_tasks(
    spec: TaskSource | Mapping[str, Any],
    base_dir: Path | None = None,
    *,
    generators: Mapping[str, Callable[..., Any]] | None = None,
) -> list[LabeledTask]:
    """Load every task a source describes. `spec` may also be the plain mapping from YAML.

    `generators` maps names to task generator functions for `kind: generator` with a bare name; by default the
    ones plugins register (hook `register_task_sources`).
    """
    if isinstance(spec, Mapping):
        spec = _SPEC_ADAPTER.validate_python(spec)
    if isinstance(spec, GeneratorTasks):
        return spec.load(base_dir, generators)
    return spec.load(base_dir)


def check_task_source(
    spec: TaskSource,
    base_dir: Path | None = None,
    *,
    generators: Mapping[str, Callable[..., Any]] | None = None,
) -> None:
    """Raise TaskSourceError now if `load_tasks(spec)` certainly fails for a reason in the config (a missing
    file or dataset, an unknown format, a generator that is not there or does not take its kwargs), without
    reading the data: cheap enough to run before the model loads."""
    if isinstance(spec, GeneratorTasks):
        spec.check(base_dir, generators)
    else:
        spec.check(base_dir)


def _hub_hint(path: Path) -> str:
    """For a data path that is really a hub dataset id: why it is not found and what to write instead."""
    written = path.as_posix()
    if not _HUB_DATASET_ID.match(written) or path.suffix.lower() in _TABLE_SUFFIXES:
        return ""
    local = path.name.replace(".", "_")
    return (
        f". {written!r} looks like a Hugging Face hub dataset id, but it is not a local file or dataset: ajet "
        "reads local datasets only and never downloads one (that needs network, or the `datasets` cache). "
        'Where there is network, save it once: python -c "import datasets; '
        f"datasets.load_dataset('{written}').save_to_disk('{local}')\" "
        f"(add the dataset's config name if it needs one), then write {{kind: hf_dataset, path: {local}}}, "
        "or give a local .jsonl/.json/.parquet/.csv file"
    )


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(f"{what} needs the `{module}` package: pip install 'ajet[data]'")


# ------------------------------------------------------------------------------------------------------------
# Rows -> tasks


def rows_to_tasks(
    rows: Iterable[Row], columns: list[str], fields: FieldMap, source: str
) -> list[LabeledTask]:
    """Map table rows to tasks with `fields`. `columns` are the source's columns (the union for JSON rows)."""
    explicit = fields.model_fields_set
    required = [fields.main_query]
    if fields.task_id is not None:
        required.append(fields.task_id)
    if fields.label is not None and "label" in explicit:
        required.append(fields.label)
    required += fields.metadata or []
    for column in required:
        if columns and column not in columns:
            raise TaskSourceError(_missing_column(source, column, columns, fields))

    id_column = fields.task_id or "task_id"
    used = {fields.main_query, fields.label, id_column if fields.task_id or id_column in columns else None}
    tasks: list[LabeledTask] = []
    wheres: list[str] = []
    for index, (where, row) in enumerate(rows):
        for column in required:
            if column not in row:
                raise TaskSourceError(_missing_column(where, column, list(row), fields))
        task_id = _task_id(row[id_column], where, id_column) if id_column in row else str(index)
        query = row[fields.main_query]
        if not isinstance(query, str):
            raise TaskSourceError(
                f"{where}: column {fields.main_query!r} (fields.main_query) holds {type(query).__name__} "
                f"{query!r}; it must hold the query text"
            )
        if fields.metadata is None:
            # A "metadata" column holding a mapping (as LabeledTask.model_dump() writes it) is unpacked, so
            # dumped tasks load back as they were; every other unused column is kept under its own name.
            nested = row.get("metadata")
            unpack = isinstance(nested, Mapping)
            rest = {k: v for k, v in row.items() if k not in used and not (unpack and k == "metadata")}
            metadata = {**nested, **rest} if unpack else rest
        else:
            metadata = {k: row[k] for k in fields.metadata}
        label = row.get(fields.label) if fields.label is not None else None
        tasks.append(LabeledTask(task_id=task_id, main_query=query, label=label, metadata=metadata))
        wheres.append(where)
    _check_unique(tasks, wheres, source)
    return tasks


def _task_id(value: Any, where: str, column: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TaskSourceError(
        f"{where}: task id column {column!r} holds {value!r}; it must hold text or a whole number "
        "(leave fields.task_id unset to number the rows instead)"
    )


def _missing_column(where: str, column: str, found: list[str], fields: FieldMap) -> str:
    role = next(
        (name for name in ("main_query", "task_id", "label") if getattr(fields, name) == column), "metadata"
    )
    close = difflib.get_close_matches(column, found, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{where}: no column {column!r}{hint}; columns found: {', '.join(map(repr, found)) or 'none'}. "
        f"Set fields.{role} to the column that holds it."
    )


def _check_unique(tasks: list[LabeledTask], wheres: list[str], source: str) -> None:
    first: dict[str, str] = {}
    for task, where in zip(tasks, wheres, strict=True):
        if task.task_id in first:
            raise TaskSourceError(
                f"{source}: task id {task.task_id!r} appears twice ({first[task.task_id]} and {where}); "
                "task ids must be unique: fix the data, or point fields.task_id at a unique column"
            )
        first[task.task_id] = where


def _coerce_task(item: Any, index: int, function: str) -> LabeledTask:
    if isinstance(item, LabeledTask):
        return item.model_copy(deep=True)
    if isinstance(item, Task):
        return LabeledTask.model_validate(item.model_dump())
    if isinstance(item, Mapping):
        data = dict(item)
        task_id = data.setdefault("task_id", str(index))
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            data["task_id"] = str(task_id)
        try:
            return LabeledTask.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}" for e in exc.errors()
            )
            raise TaskSourceError(
                f"generator {function!r} item {index}: {problems} "
                "(a dict needs main_query, and may have task_id, label, metadata)"
            ) from None
    raise TaskSourceError(
        f"generator {function!r} item {index} is {type(item).__name__}; yield LabeledTask, Task or dict"
    )


# ------------------------------------------------------------------------------------------------------------
# Readers


_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


def _format_from_suffix(path: Path) -> str:
    try:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise TaskSourceError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            "set format: jsonl, json, parquet or csv"
        ) from None


def _union(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(key for _, row in rows for key in row))


def _read_jsonl(path: Path) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskSourceError(
                    f"{path} line {number}: not valid JSON ({exc.msg}, column {exc.colno}); "
                    "JSONL needs one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise TaskSourceError(
                    f"{path} line {number}: expected a JSON object, got {type(row).__name__}; "
                    "JSONL needs one object per line"
                )
            rows.append((f"{path} line {number}", row))
    return rows, _union(rows)


def _read_json(path: Path) -> tuple[list[Row], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise TaskSourceError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise TaskSourceError(
            f"{path}: expected a JSON array of objects, one per task "
            "(for one object per line use a .jsonl file or format: jsonl)"
        )
    rows: list[Row] = [(f"{path} item {i}", row) for i, row in enumerate(data)]
    return rows, _union(rows)


def _read_parquet(path: Path) -> tuple[list[Row], list[str]]:
    _require("pyarrow", "reading Parquet")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise TaskSourceError(f"{path}: cannot read as Parquet ({exc})") from None
    return [(f"{path} row {i}", row) for i, row in enumerate(table.to_pylist())], list(table.column_names)


def _read_csv(path: Path) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row:  # DictReader files extra values under the key None
                raise TaskSourceError(f"{where}: more values than the header has columns")
            rows.append((where, row))
        columns = list(reader.fieldnames or [])
    return rows, columns


_DATASET_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


def _load_local_dataset(path: Path, split: str) -> Any:
    _require("datasets", "kind: hf_dataset")
    import datasets

    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path))
        else:
            builder = _DATASET_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise TaskSourceError(
                    f"{path}: not a dataset directory nor a .csv/.json/.jsonl/.parquet/.txt file",
                    field="path",
                )
            loaded = datasets.load_dataset(builder, data_files=str(path))
    except TaskSourceError:
        raise
    except Exception as exc:  # `datasets` raises many types for a directory or file it cannot read
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TaskSourceError(
            f"{path}: `datasets` cannot read it ({type(exc).__name__}: {first}); give a save_to_disk "
            "directory, a directory of data files, or one .csv/.json/.jsonl/.parquet file",
            field="path",
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise TaskSourceError(
                f"{path}: no split {split!r}; splits found: {', '.join(loaded)}. Set split: to one."
            )
        return loaded[split]
    return loaded  # a single saved Dataset has no splits; `split` does not apply


# ------------------------------------------------------------------------------------------------------------
# References: "package.module:attr" and "path/to/file.py:attr"


def resolve_path(path: str | Path, base_dir: Path | None) -> Path:
    """`path` as written in the config, made absolute against `base_dir` (default: the working directory)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


def _relative_to(base_dir: Path | None) -> str:
    return f", relative to {base_dir}" if base_dir is not None else ", relative to the working directory"


def import_object(ref: str, base_dir: Path | None = None) -> object:
    """The object a reference names: "package.module:attr" (an importable module, or `module.py` beside the
    config) or "path/to/file.py:attr" (a file, relative to `base_dir`). `attr` may be dotted (`Class.method`).

    Raises ValueError (malformed), FileNotFoundError, ImportError (not importable, or failed while importing)
    or AttributeError (the name is missing; the message lists close names).
    """
    module_ref, colon, attr = ref.rpartition(":")
    if not colon or not module_ref.strip() or not all(part.isidentifier() for part in attr.split(".")):
        raise ValueError(
            f"{ref!r} is not an object reference; write 'package.module:name' or 'path/to/file.py:name'"
        )
    obj: object = import_module_ref(module_ref, base_dir, ref)
    for depth, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = ":".join([module_ref, ".".join(attr.split(".")[:depth])]) if depth else module_ref
            raise AttributeError(_missing_attribute(ref, owner, obj, part)) from None
    return obj


def import_module_ref(module_ref: str, base_dir: Path | None = None, ref: str | None = None) -> ModuleType:
    """The module a reference's left part names: "package.module" or "path/to/file.py" (see `import_object`);
    `ref` is the whole reference, for error messages."""
    ref = ref or module_ref
    if module_ref.endswith(".py") or "/" in module_ref or "\\" in module_ref:
        return _import_file(resolve_path(module_ref, base_dir), ref, base_dir)
    return _import_module(module_ref, ref, base_dir)


def _import_module(name: str, ref: str, base_dir: Path | None) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise ImportError(f"{ref}: importing {name!r} failed: {exc}") from exc
        # Not an installed module: a `name.py` beside the config is what a user most likely means.
        beside = resolve_path(name.replace(".", "/") + ".py", base_dir)
        if beside.is_file():
            return _import_file(beside, ref, base_dir)
        raise ImportError(
            f"{ref}: no module named {name!r} (not installed, and no {beside}); install its package, "
            "or write the file's path: 'path/to/file.py:name'"
        ) from None
    except Exception as exc:
        raise ImportError(f"{ref}: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path, ref: str, base_dir: Path | None) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{ref}: file {path} not found (paths are{_relative_to(base_dir)[1:]})")
    # One module per file path: importing the same file twice must give the same classes.
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_ajet_file_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{ref}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it (dataclasses and pickling look modules up by name), and the file's
    # directory is made importable so it can import its sibling modules, as when run as a script. Appended,
    # not prepended, so a user file never shadows an installed package.
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not an import problem
            raise
        raise ImportError(f"{ref}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _missing_attribute(ref: str, owner_ref: str, owner: object, name: str) -> str:
    public = [n for n in dir(owner) if not n.startswith("_")]
    close = difflib.get_close_matches(name, public, n=5, cutoff=0.5)
    if close:
        return f"{ref}: {owner_ref} has no attribute {name!r}; did you mean: {', '.join(close)}?"
    shown = ", ".join(public[:20]) + (", ..." if len(public) > 20 else "")
    return f"{ref}: {owner_ref} has no attribute {name!r}; it has: {shown or 'no public names'}"


def _signature(fn: Callable[..., Any]) -> str:
    try:
        return f"{getattr(fn, '__name__', 'function')}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)
