"""The werewolves rules (examples/werewolves/werewolves_game.py) on scripted answers: no LLM, no model."""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ajet.core.tasks import import_object

EXAMPLE = Path(__file__).parents[2] / "examples" / "werewolves"
# Loaded the way `ajet` loads it, which makes the example's directory importable: the workflow and this test
# then share one `werewolves_game` module (one `Role` enum).
WerewolvesWorkflow: Any = import_object(f"{EXAMPLE / 'workflow.py'}:WerewolvesWorkflow")
game: Any = importlib.import_module("werewolves_game")
Role, Team, Game = game.Role, game.Team, game.Game

Answer = Callable[[str, str], str]


def first(g: Any, role: Any) -> str:
    return g.living(role=role)[0].name


def play(g: Any, answer: Answer, discussion: bool = False) -> tuple[Any, Any]:
    io = game.ScriptedPlayers(answer)
    result = asyncio.run(game.play(g, io, discussion=discussion))
    return result, io


def scripted(g: Any, *, wolves: Answer, others: Answer) -> Answer:
    """Werewolves answer with `wolves`, everyone else with `others` (role looked up when asked)."""

    def answer(name: str, question: str) -> str:
        return (wolves if g.player(name).role is Role.WEREWOLF else others)(name, question)

    return answer


def scripted_night(*victims: str) -> Answer:
    """Werewolves who attack `victims[k]` on night k+1 and abstain from every vote."""

    def answer(name: str, question: str) -> str:
        for night, victim in enumerate(victims, start=1):
            if question.startswith(f"Night {night}:"):
                return victim
        return "no idea"

    return answer


def test_seeded_role_assignment() -> None:
    seatings = [[p.role for p in Game(seed).players] for seed in range(5)]
    assert seatings[0] == [p.role for p in Game(0).players], "the same seed must seat the same roles"
    assert len({tuple(s) for s in seatings}) > 1, "different seeds should seat roles differently"
    for seating in seatings:
        assert Counter(seating) == {
            Role.WEREWOLF: 3,
            Role.VILLAGER: 3,
            Role.SEER: 1,
            Role.WITCH: 1,
            Role.HUNTER: 1,
        }
    assert [p.name for p in Game(0).players] == [f"Player{i}" for i in range(1, 10)]


def test_bad_setups_are_refused() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        Game(0, max_rounds=0)
    with pytest.raises(ValueError, match="werewolf"):
        Game(0, roles=[Role.VILLAGER] * 4)
    with pytest.raises(ValueError, match="more good players"):
        Game(0, roles=[Role.WEREWOLF, Role.WEREWOLF, Role.VILLAGER, Role.SEER])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I vote for Player 4.", "Player4"),
        ("player7", "Player7"),
        ("PLAYER #3 for sure", "Player3"),
        ("4", "Player4"),
        (" 4. ", "Player4"),
        ("Player2 is dead, so Player5", "Player5"),  # Player2 is not a candidate: skipped
        ("Night 2 was scary", None),  # a number inside other words names nobody
        ("Player12", None),
        ("I don't know", None),
        ("", None),
    ],
)
def test_parse_choice(text: str, expected: str | None) -> None:
    assert game.parse_choice(text, ["Player3", "Player4", "Player5", "Player7"]) == expected


def test_win_conditions() -> None:
    g = Game(1)
    assert g.check_winner() is None
    for wolf in g.living(role=Role.WEREWOLF):
        wolf.alive = False
    assert g.check_winner() is Team.VILLAGE

    g = Game(1)
    good = g.living(team=Team.VILLAGE)
    for player in good[:2]:
        player.alive = False
    assert g.check_winner() is None, "3 werewolves against 4 good players: not over"
    good[2].alive = False
    assert g.check_winner() is Team.WEREWOLVES, "3 werewolves against 3: the werewolves win"


def test_witch_saves_the_night_victim() -> None:
    g = Game(2, max_rounds=1)
    victim = first(g, Role.VILLAGER)
    wolves = scripted_night(victim)
    result, io = play(g, scripted(g, wolves=wolves, others=lambda n, q: "SAVE" if "SAVE" in q else "?"))
    assert g.player(victim).alive, "the witch saved the victim"
    assert any("nobody died last night" in line for line in result.log)
    assert g.save_potion is False and g.poison_potion is True
    witch = first(g, Role.WITCH)
    assert any(name == witch and f"attacked {victim}" in q for name, q in io.asked)


def test_witch_potions_work_once() -> None:
    g = Game(3, max_rounds=2)
    witch = first(g, Role.WITCH)
    wolves = {p.name for p in g.living(role=Role.WEREWOLF)}
    villagers = [p.name for p in g.living(role=Role.VILLAGER)]
    poisoned = sorted(wolves)[0]

    def others(name: str, question: str) -> str:
        if name == witch:
            return f"SAVE and POISON {poisoned}"  # the same answer both nights
        return "no idea"  # abstain from every vote

    _, io = play(g, scripted(g, wolves=scripted_night(villagers[0], villagers[1]), others=others))
    witch_questions = [q for name, q in io.asked if name == witch and "attacked" in q]
    assert len(witch_questions) == 1, "with both potions used on night 1, the witch is not asked on night 2"
    assert "SAVE" in witch_questions[0] and "POISON" in witch_questions[0]
    assert g.player(villagers[0]).alive and not g.player(poisoned).alive
    assert not g.player(villagers[1]).alive, "night 2's victim dies: the save potion is gone"
    assert (g.save_potion, g.poison_potion) == (False, False)

    # Direct: a potion already used is not used again, whatever the answer says.
    g = Game(3)
    assert g.witch_choice(witch, villagers[0], "save").save is True
    again = g.witch_choice(witch, villagers[0], f"SAVE, POISON {poisoned}")
    assert again.save is False and again.poison == poisoned
    assert g.witch_choice(witch, villagers[0], f"POISON {poisoned}").poison is None
    herself = Game(3).witch_choice(witch, None, f"SAVE and POISON {witch}")
    assert herself == game.WitchChoice(save=False, poison=None), (
        "no victim to save; she cannot poison herself"
    )


def test_hunter_shoots_when_killed_at_night() -> None:
    g = Game(4, max_rounds=1)
    hunter = first(g, Role.HUNTER)
    wolf = first(g, Role.WEREWOLF)

    def others(name: str, question: str) -> str:
        return wolf if name == hunter and "shoot" in question else "PASS"

    result, io = play(g, scripted(g, wolves=lambda n, q: hunter, others=others))
    assert not g.player(hunter).alive and not g.player(wolf).alive
    assert f"{hunter} was the hunter and shot {wolf}." in result.log
    assert any(
        name == hunter and "died last night" in note for name, notes in io.told.items() for note in notes
    )


def test_hunter_shoots_when_voted_out_and_can_hold_fire() -> None:
    g = Game(5, max_rounds=1)
    hunter = first(g, Role.HUNTER)
    villager = first(g, Role.VILLAGER)
    shots = iter(["I shoot " + villager])

    def others(name: str, question: str) -> str:
        if "shoot" in question:
            return next(shots)
        return "SAVE" if "SAVE" in question else hunter  # the witch saves; everyone votes the hunter out

    result, _ = play(g, scripted(g, wolves=lambda n, q: hunter, others=others))
    assert not g.player(hunter).alive and not g.player(villager).alive
    assert f"{hunter} was the hunter and shot {villager}." in result.log

    g = Game(5)
    before = g.fallbacks
    assert g.shoot(hunter, None) is None and g.shoot(hunter, hunter) is None
    assert len(g.living()) == 9 and g.fallbacks == before + 2


def test_the_village_wins_by_voting_out_every_werewolf() -> None:
    g = Game(6, max_rounds=5)

    def first_wolf(name: str, question: str) -> str:
        return "PASS" if "SAVE" in question else first(g, Role.WEREWOLF)

    def first_good_but_hunter(name: str, question: str) -> str:
        return next(p.name for p in g.living(team=Team.VILLAGE) if p.role is not Role.HUNTER)

    result, _ = play(g, scripted(g, wolves=first_good_but_hunter, others=first_wolf))
    assert result.winner is Team.VILLAGE and result.rounds == 3
    assert g.living(role=Role.WEREWOLF) == []
    assert result.outcome(Team.VILLAGE) == "won" and result.outcome(Team.WEREWOLVES) == "lost"


def test_the_werewolves_win_at_parity_and_max_rounds_is_a_draw() -> None:
    def game_with(max_rounds: int) -> Any:
        g = Game(7, max_rounds=max_rounds)

        def kill(name: str, question: str) -> str:
            if "pack" not in question:
                return "PASS"
            return next(p.name for p in g.living(team=Team.VILLAGE) if p.role is not Role.HUNTER)

        return play(g, scripted(g, wolves=kill, others=lambda n, q: "PASS"))[0]

    won = game_with(5)  # 6 good players die one a night; nobody is ever voted out
    assert won.winner is Team.WEREWOLVES and won.rounds == 3 and len(won.survivors) == 6
    draw = game_with(2)
    assert draw.winner is None and draw.rounds == 2 and draw.outcome(Team.WEREWOLVES) == "draw"


def test_unparseable_answers_fall_back_deterministically() -> None:
    def run(seed: int) -> Any:
        g = Game(seed, max_rounds=1)
        return play(g, lambda name, question: "hmm, the moon is nice")[0]

    first_run, second_run = run(8), run(8)
    assert first_run.log == second_run.log, "the same seed and answers must play the same game"
    # The pack still kills (a random non-werewolf), the seer still checks someone, every vote abstains.
    wolves = {name for name, role in first_run.roles.items() if role is Role.WEREWOLF}
    (attack,) = [line for line in first_run.log if line.startswith("The pack attacks")]
    victim = attack.split()[3].rstrip(".")
    assert victim not in wolves and victim not in first_run.survivors
    assert any(" a werewolf." in line for line in first_run.log)
    assert any("Nobody is out." in line for line in first_run.log)
    # 3 wolf picks, 1 seer pick and 8 votes named nobody valid, plus the shot of a killed hunter (the witch's
    # answer is a PASS, a valid choice)
    hunter_died = first_run.roles[victim] is Role.HUNTER
    assert first_run.fallbacks == 12 + hunter_died
    assert first_run.winner is None


def test_victim_is_the_majority_pick() -> None:
    g = Game(9)
    wolves = [p.name for p in g.living(role=Role.WEREWOLF)]
    a, b = [p.name for p in g.living(team=Team.VILLAGE)][:2]
    assert g.choose_victim(dict(zip(wolves, [a, b, b], strict=True))) == b
    assert g.choose_victim(dict(zip(wolves, [a, None, wolves[0]], strict=True))) == a
    assert g.fallbacks == 2, "a missing pick and a pick of a fellow werewolf are fallbacks"
    tie = [Game(9).choose_victim({wolves[0]: a, wolves[1]: b}) for _ in range(3)]
    assert len(set(tie)) == 1 and tie[0] in (a, b), "a tie is broken the same way for the same seed"


def test_rewards_per_role() -> None:
    workflow = WerewolvesWorkflow()
    g = Game(0)
    wolves = {p.name for p in g.living(role=Role.WEREWOLF)}
    trained = {p.name: p.name in wolves for p in g.players}

    def output(winner: Any, trained_players: dict[str, bool]) -> Any:
        g.winner = winner
        return workflow.output(g.result(), trained_players)

    won = output(Team.WEREWOLVES, trained)
    assert won.reward == 1.0 and won.is_success is True
    assert won.target_rewards == {"werewolf": 1.0, "villager": 0.0, "seer": 0.0, "witch": 0.0, "hunter": 0.0}
    assert won.metadata["trained_roles"] == ["werewolf"] and won.metadata["winner"] == "werewolves"
    lost = output(Team.VILLAGE, trained)
    assert lost.reward == 0.0 and lost.is_success is False and lost.target_rewards["seer"] == 1.0
    draw = output(None, trained)
    assert draw.reward == 0.5 and set(draw.target_rewards.values()) == {0.5}

    good = {name: not is_wolf for name, is_wolf in trained.items()}
    assert output(Team.VILLAGE, good).reward == 1.0
    everyone = dict.fromkeys(trained, True)
    assert output(Team.VILLAGE, everyone).reward == pytest.approx(6 / 9)
    assert output(Team.VILLAGE, everyone).is_success is False


def test_workflow_defaults_and_bad_args() -> None:
    assert WerewolvesWorkflow().trainable_targets == ["werewolf"]
    with pytest.raises(ValueError, match="would train nothing"):
        WerewolvesWorkflow(trainable_targets=[])
    with pytest.raises(ValueError, match="base_url"):
        WerewolvesWorkflow(debug_model={"model": "m"})
    endpoint = WerewolvesWorkflow(debug_model={"base_url": "http://127.0.0.1:1/v1", "model": "m"}).debug_model
    assert endpoint is not None and endpoint.model == "m"


def test_game_tasks() -> None:
    tasks = list(import_object(f"{EXAMPLE / 'workflow.py'}:game_tasks")(count=3, first_seed=10))
    assert [t.task_id for t in tasks] == ["game-10", "game-11", "game-12"]
    assert [t.metadata["seed"] for t in tasks] == [10, 11, 12]
