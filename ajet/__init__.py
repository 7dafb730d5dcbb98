"""ajet: train the LLM inside an existing agent with reinforcement learning, whatever its framework."""

from ajet.core.gateway.keys import OpenAIEndpoint
from ajet.core.tuner import AjetTuner, ModelTuner
from ajet.core.types import LabeledTask, Task, WorkflowOutput, WorkflowTask
from ajet.core.workflow import Workflow

__version__ = "0.1.0"

__all__ = [
    "AjetTuner",
    "LabeledTask",
    "ModelTuner",
    "OpenAIEndpoint",
    "Task",
    "Workflow",
    "WorkflowOutput",
    "WorkflowTask",
    "__version__",
]


def __getattr__(name: str) -> object:
    # AgentFly's name for the token-level dataset; loaded on first use, since it needs torch and `import ajet`
    # must not
    if name == "tokenize_trajectories":
        from ajet.trainer.token_dataset import tokenize_trajectories

        return tokenize_trajectories
    raise AttributeError(f"module 'ajet' has no attribute {name!r}")
