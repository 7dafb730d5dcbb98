"""Seed 001's multi-agent snippet rendered in AgentScope 2.x: `Agent` for `ReActAgent`, 2.x's
`OpenAIChatModel(credential=..., model=...)` as the default models, and the formatter passed to the model
(`get_model(role, formatter=...)`: keyword arguments go to the trained agents' model, as with
`as_agentscope_model`). `register_model` / `get_model` / `trainable_targets` are the seed's."""

from agentscope.agent import Agent, InjectionConfig
from agentscope.credential import OpenAICredential
from agentscope.formatter import OpenAIMultiAgentFormatter
from agentscope.model import OpenAIChatModel
from seed_support import get_official_agent_prompt, werewolves_game

from ajet import ModelTuner, Workflow, WorkflowOutput, WorkflowTask


def remote_model(name: str) -> OpenAIChatModel:
    # the endpoint comes from the environment (OPENAI_BASE_URL), as the seed's 1.x model's does
    return OpenAIChatModel(
        credential=OpenAICredential(api_key="no_api_key"),
        model=name,
        stream=False,
        formatter=OpenAIMultiAgentFormatter(),
    )


class ExampleMathLearn(Workflow):
    name: str = "math_agent_workflow"
    trainable_targets: list = ["werewolf"]

    async def execute(self, task: WorkflowTask, model_tuner: ModelTuner) -> WorkflowOutput:
        roles = ["werewolf"] * 3 + ["villager"] * 3 + ["seer", "witch", "hunter"]
        players = []

        for i, role in enumerate(roles):
            # Define different default models for different roles
            default_model_for_good_guys = remote_model("qwen-max")
            default_model_for_bad_guys = remote_model("qwen-plus")

            chosen_model = default_model_for_good_guys if role != "werewolf" else default_model_for_bad_guys

            # Register role with its default model
            model_tuner.register_model(role, default_model=chosen_model)

            # Create agent bound to the role
            players += [
                Agent(
                    name=f"Player{i + 1}",
                    system_prompt=get_official_agent_prompt(f"Player{i + 1}"),
                    model=model_tuner.get_model(role, formatter=OpenAIMultiAgentFormatter()),
                    injection_config=InjectionConfig(inject_runtime_state=False),
                )
            ]

        good_guy_win = await werewolves_game(players, roles)
        trained_good_guys = "werewolf" not in self.trainable_targets
        return WorkflowOutput(reward=float(good_guy_win == trained_good_guys))
