"""Turn the config's `workflow:` reference into a factory of `Workflow` instances, checked up front."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from ajet.core.config import AjetConfig, ConfigError
from ajet.core.import_hints import with_install_hint
from ajet.core.tasks import import_object
from ajet.core.workflow import Workflow


def load_workflow_factory(config: AjetConfig) -> Callable[[], Workflow]:
    """A factory that makes one fresh workflow per episode. Fails now, with a clear message, if the class is
    missing, is not a Workflow, or rejects `workflow.args`."""
    try:
        cls = import_object(config.workflow.path, config.base_dir)
    except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"workflow.path: {with_install_hint(exc)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise ConfigError(
            f"workflow.path: {config.workflow.path!r} is not a subclass of ajet.Workflow "
            f"(it is a {type(cls).__name__}). Point it at your `class MyWorkflow(Workflow)`."
        )
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
