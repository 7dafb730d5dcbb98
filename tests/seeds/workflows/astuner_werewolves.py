"""Seed 001 (ASTuner "Trainable Workflow"), Advanced Agent Scenario, on AgentScope 1.x: the seed's multi-agent
snippet (`model_tuner.register_model(role, default_model=chosen_model)`, `model=model_tuner.get_model(role)`)
inside the seed's `class ExampleMathLearn(Workflow)` with `trainable_targets`. The seed stops after making the
players; the game and the reward (1 when the trained side won) are the least code that finishes it."""

from agentscope.agent import ReActAgent
from agentscope.formatter import OpenAIMultiAgentFormatter
from agentscope.model import OpenAIChatModel
from seed_support import get_official_agent_prompt, werewolves_game

from ajet import ModelTuner, Workflow, WorkflowOutput, WorkflowTask


class ExampleMathLearn(Workflow):
    name: str = "math_agent_workflow"
    trainable_targets: list = ["werewolf"]

    async def execute(self, task: WorkflowTask, model_tuner: ModelTuner) -> WorkflowOutput:
        # fmt: off
        roles = ["werewolf"] * 3 + ["villager"] * 3 + ["seer", "witch", "hunter"]
        players = []

        for i, role in enumerate(roles):
            # Define different default models for different roles
            default_model_for_good_guys = OpenAIChatModel(model_name="qwen-max", stream=False)
            default_model_for_bad_guys = OpenAIChatModel(model_name="qwen-plus", stream=False)

            chosen_model = (
                default_model_for_good_guys
                if role != "werewolf"
                else default_model_for_bad_guys
            )

            # Register role with its default model
            model_tuner.register_model(role, default_model=chosen_model)

            # Create agent bound to the role
            players += [ReActAgent(
                name=f"Player{i + 1}",
                sys_prompt=get_official_agent_prompt(f"Player{i + 1}"),
                model=model_tuner.get_model(role),
                formatter=OpenAIMultiAgentFormatter(),
            )]
        # fmt: on

        good_guy_win = await werewolves_game(players, roles)
        trained_good_guys = "werewolf" not in self.trainable_targets
        return WorkflowOutput(reward=float(good_guy_win == trained_good_guys))
