"""Werewolves with AgentScope 2.x agents: nine players, one trainable role (the werewolves by default).

Every player is an AgentScope `Agent` whose model comes from
`tuner.as_agentscope_model(agent_name="PlayerN", target_tag=<role>, debug_model=...)`. Which roles learn is
configuration, not code: `trainable_targets` (the workflow's default is `["werewolf"]`; the config's top-level
`trainable_targets:` overrides it). The other roles are served by `debug_model` (an OpenAI-compatible endpoint)
or, without one, by the current policy, untrained. Trained agents share one set of weights.

Reward: 1 to the side that won, 0 to the other, `draw_reward` to both when `max_rounds` pass undecided, given
per role in `target_rewards` (the trainer uses a sample's own role's reward); `reward` is the mean over the
trained players.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ajet import AjetTuner, LabeledTask, OpenAIEndpoint, Workflow, WorkflowOutput, WorkflowTask

# werewolves_game.py beside this file: ajet makes a workflow file's directory importable when it loads it.
from werewolves_game import Game, GameResult, PlayerIO, Role, Team, play, system_prompt, team_of  # isort: skip


class AgentScopePlayers(PlayerIO):
    """One AgentScope agent per player. What the moderator tells a player is delivered, with the next
    question, as one user message: the agent's own memory then holds the whole game from its seat."""

    def __init__(self, agents: dict[str, Any]) -> None:
        self.agents = agents
        self.notes: dict[str, list[str]] = {name: [] for name in agents}

    def inform(self, name: str, text: str) -> None:
        self.notes[name].append(text)

    async def ask(self, name: str, question: str) -> str:
        from agentscope.message import UserMsg

        content = "\n".join([*self.notes[name], question])
        self.notes[name] = []
        reply = await self.agents[name].reply(UserMsg(name="moderator", content=content))
        return reply.get_text_content() or ""


class WerewolvesWorkflow(Workflow):
    trainable_targets: list[str] | None = ["werewolf"]
    max_rounds: int = Field(2, ge=1, description="rounds (night + day) before the game is a draw")
    discussion: bool = Field(True, description="one sentence per living player each day before the vote")
    max_tokens: int = Field(16, ge=1, description="most tokens per answer (a choice or a sentence)")
    draw_reward: float = Field(0.5, description="reward for both sides when max_rounds pass undecided")
    debug_model: OpenAIEndpoint | None = Field(
        None,
        description="serves the roles that are not trained: {base_url, api_key, model}; None: the policy",
    )

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        from agentscope.agent import Agent, InjectionConfig

        game = Game(int(workflow_task.task.metadata.get("seed", 0)), max_rounds=self.max_rounds)
        agents: dict[str, Any] = {}
        trained: dict[str, bool] = {}
        for player in game.players:
            tag = player.role.value
            model = tuner.as_agentscope_model(
                agent_name=player.name,
                target_tag=tag,
                debug_model=self.debug_model,
                parameters={"max_tokens": self.max_tokens},
            )
            trained[player.name] = tuner.is_trainable(tag)
            agents[player.name] = Agent(
                name=player.name,
                system_prompt=system_prompt(game, player.name),
                model=model,
                # No clock in the prompt: the same game state must give the same tokens.
                injection_config=InjectionConfig(inject_runtime_state=False),
            )
        if not any(trained.values()):
            raise ValueError(
                "trainable_targets names no role of this game, so nothing would be trained; "
                f"use some of: {', '.join(role.value for role in Role)}"
            )
        result = await play(game, AgentScopePlayers(agents), discussion=self.discussion)
        return self.output(result, trained)

    def output(self, result: GameResult, trained: dict[str, bool]) -> WorkflowOutput:
        team_reward = {
            team: self.draw_reward if result.winner is None else float(result.winner is team) for team in Team
        }
        target_rewards = {role.value: team_reward[team_of(role)] for role in Role}
        trained_roles = [result.roles[name] for name, is_trained in trained.items() if is_trained]
        rewards = [target_rewards[role.value] for role in trained_roles]
        return WorkflowOutput(
            reward=sum(rewards) / len(rewards),
            target_rewards=target_rewards,
            is_success=result.winner is not None and all(team_of(r) is result.winner for r in trained_roles),
            metadata={
                "winner": result.winner.value if result.winner else "draw",
                "outcome": {role.value: result.outcome(team_of(role)) for role in Role},
                "trained_roles": sorted({role.value for role in trained_roles}),
                "rounds": result.rounds,
                "roles": {name: role.value for name, role in result.roles.items()},
                "survivors": result.survivors,
                "fallbacks": result.fallbacks,
                "log": result.log,
            },
        )


def game_tasks(count: int = 64, first_seed: int = 0) -> Iterator[LabeledTask]:
    """One task per game seed (the seating): the episodes of a GRPO group play the same seating."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    for seed in range(first_seed, first_seed + count):
        yield LabeledTask(task_id=f"game-{seed}", main_query="Play werewolves.", metadata={"seed": seed})
