"""Seed 000's `ExampleWerewolves` rendered in AgentScope 2.x: `Agent` for `ReActAgent`, 2.x's
`OpenAIChatModel(credential=..., model=...)` as the `debug_model`, the formatter given to the model (the
trained agents' through `as_agentscope_model(formatter=...)`) and `max_iters` through `ReActConfig`. The rest
(asserts, roles, `trainable_targets`, the reward and its `except`s) is the seed's."""

from typing import Any

import numpy as np
from agentscope.agent import Agent, InjectionConfig, ReActConfig
from agentscope.credential import OpenAICredential
from agentscope.formatter import DashScopeMultiAgentFormatter, OpenAIMultiAgentFormatter
from agentscope.model import OpenAIChatModel
from pydantic import Field
from seed_support import (
    GAME,
    BadGuyException,
    game_metadata,
    get_official_agent_prompt,
    logger,
    werewolves_game,
)

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


class ExampleWerewolves(Workflow):
    trainable_targets: list[str] | None = Field(
        default=["werewolf"], description="List of agents to be fine-tuned."
    )

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        assert self.trainable_targets is not None, "trainable_targets cannot be None in ExampleWerewolves."
        if "werewolf" in self.trainable_targets:
            assert len(self.trainable_targets) == 1, "Cannot train hostile roles simultaneously."
        else:
            assert len(self.trainable_targets) != 0, "No trainable targets specified."

        roles = ["werewolf"] * 3 + ["villager"] * 3 + ["seer", "witch", "hunter"]
        task_id = workflow_task.task.metadata["random_number"]
        np.random.seed(int(task_id))
        np.random.shuffle(roles)

        players = []
        for i, role in enumerate(roles):
            default_model = OpenAIChatModel(
                credential=OpenAICredential(api_key="no_api_key"),  # base_url: OPENAI_BASE_URL
                model="Qwen/Qwen3-235B-A22B-Instruct-2507",
                stream=False,
                formatter=OpenAIMultiAgentFormatter(),
            )
            model_for_this_agent = tuner.as_agentscope_model(
                agent_name=f"Player{i + 1}",
                target_tag=role,
                debug_model=default_model,
                formatter=DashScopeMultiAgentFormatter(),  # for the trained agents' model
            )
            agent = Agent(
                name=f"Player{i + 1}",
                system_prompt=get_official_agent_prompt(f"Player{i + 1}"),
                model=model_for_this_agent,
                react_config=ReActConfig(max_iters=3 if role in self.trainable_targets else 5),
                injection_config=InjectionConfig(inject_runtime_state=False),
            )
            players += [agent]

        try:
            good_guy_win = await werewolves_game(players, roles)
            raw_reward = 0
            is_success = False
            if (good_guy_win and self.trainable_targets[0] != "werewolf") or (
                not good_guy_win and self.trainable_targets[0] == "werewolf"
            ):
                raw_reward = 1
                is_success = True
            logger.warning(f"Raw reward: {raw_reward}")
            logger.warning(f"Is success: {is_success}")
        except BadGuyException:
            logger.bind(exception=True).exception("Error during game execution. Game cannot continue.")
            raw_reward = -0.1
            is_success = False
        except Exception:
            logger.bind(exception=True).exception("Error during game execution. Game cannot continue.")
            raw_reward = -0.1
            is_success = False

        return WorkflowOutput(reward=raw_reward, is_success=is_success)


class ObservedExampleWerewolves(ExampleWerewolves):
    """The workflow, plus the winner and the `trainable_targets` it saw, in the metadata."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        seen = list(self.trainable_targets or [])
        box: dict[str, Any] = {}
        GAME.set(box)
        output = await super().execute(workflow_task, tuner)
        output.metadata.update(game_metadata(box), trainable_targets=seen)
        return output
