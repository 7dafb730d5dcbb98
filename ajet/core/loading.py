"""Turn the config's `workflow:` reference into a factory of `Workflow` instances, checked up front.

`workflow:` names a class (`workflow.py:MyWorkflow`, `package.module:MyWorkflow`) or just a module
(`workflow.py`, `package.module`): then the one concrete `Workflow` subclass defined in that module is used, as
Osmosis' entrypoint discovery does. Classes the module only imports, and abstract ones, do not count.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from ajet.core.config import AjetConfig, ConfigError
from ajet.core.import_hints import with_install_hint
from ajet.core.targets import EMPTY_TARGETS_MESSAGE
from ajet.core.tasks import import_module_ref, import_object
from ajet.core.workflow import Workflow


def load_workflow_factory(config: AjetConfig) -> Callable[[], Workflow]:
    """A factory that makes one fresh workflow per episode. Fails now, with a clear message, if the class is
    missing, is not a Workflow, rejects `workflow.args`, or has `trainable_targets = []` as its default."""
    if config.workflow is None:
        raise ConfigError(
            "workflow: this command runs your workflow, and the config names none; add "
            "`workflow: workflow.py:MyWorkflow` (only `ajet serve`, whose episodes run in its clients, does "
            "without one)"
        )
    try:
        cls = _import_workflow(config.workflow.path, config.base_dir)
    except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"workflow.path: {with_install_hint(exc)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise ConfigError(
            f"workflow.path: {config.workflow.path!r} is not a subclass of ajet.Workflow "
            f"(it is a {type(cls).__name__}). Point it at your `class MyWorkflow(Workflow)`."
        )
    # pydantic does not validate defaults, so `trainable_targets = []` in the class body would pass unseen and
    # the run would train on nothing.
    if cls.model_fields["trainable_targets"].get_default(call_default_factory=True) == []:
        raise ConfigError(f"workflow {cls.__name__}: {EMPTY_TARGETS_MESSAGE}")
    args = dict(config.workflow.args)
    # The context lets a workflow resolve paths in its args against the config file's directory, as the rest
    # of the config is (e.g. ReActWorkflow's tool references).
    context = {"base_dir": config.base_dir}
    try:
        cls.model_validate(args, context=context)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"workflow.args do not fit {cls.__name__}: {problems}") from None
    except TypeError as exc:
        raise ConfigError(
            f"workflow.path: {cls.__name__} cannot be created ({exc}); is execute() defined?"
        ) from None
    return lambda: cls.model_validate(args, context=context)


def _import_workflow(ref: str, base_dir: Path) -> object:
    """The object `ref` names; for a bare module reference, the one concrete Workflow it defines."""
    if ":" in ref:
        return import_object(ref, base_dir)
    module = import_module_ref(ref, base_dir)
    found = list(
        {
            id(obj): obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Workflow)
            and obj.__module__ == module.__name__  # defined here, not imported
            and not inspect.isabstract(obj)
        }.values()
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            f"{ref!r} defines no concrete Workflow subclass (imported and abstract classes do not count); "
            f"define `class MyWorkflow(Workflow)` with an execute() method there, or write '{ref}:ClassName'"
        )
    names = ", ".join(sorted(obj.__name__ for obj in found))
    raise ValueError(
        f"{ref!r} defines {len(found)} concrete Workflow subclasses ({names}); say which one to run, e.g. "
        f"'{ref}:{sorted(obj.__name__ for obj in found)[0]}'"
    )
