"""ajet: train the LLM inside an existing agent with reinforcement learning."""

__version__ = "0.1.0"
