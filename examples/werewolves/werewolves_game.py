"""The rules of werewolves as pure Python (no LLM): who plays what, what each phase asks, how answers resolve.

Nine players: three werewolves, three villagers, a seer, a witch and a hunter, seated Player1..Player9 in a
seeded random order. Each round is a night then a day:

- night: the werewolves pick a victim (majority of their picks), the seer checks whether one player is a
  werewolf, the witch learns the victim and may use her one save potion and/or her one poison potion;
- day: the deaths are announced; each living player says one sentence (when discussion is on), then everyone
  votes and the player with the most votes is out.

A killed hunter shoots one player. The village wins when every werewolf is dead; the werewolves win as soon as
they are at least as many as the other living players. A game still undecided after `max_rounds` is a draw.

Players answer in free text. A choice is the first valid "PlayerN" (or bare N) in the answer; anything else
falls back deterministically (a seeded random valid target where the rules need one, otherwise abstaining), so
a weak model never breaks a game. `play()` drives the phases through a `PlayerIO`: the workflow's AgentScope
agents, or scripted answers in the tests.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    WEREWOLF = "werewolf"
    VILLAGER = "villager"
    SEER = "seer"
    WITCH = "witch"
    HUNTER = "hunter"


class Team(StrEnum):
    WEREWOLVES = "werewolves"
    VILLAGE = "village"


def team_of(role: Role) -> Team:
    return Team.WEREWOLVES if role is Role.WEREWOLF else Team.VILLAGE


NINE_PLAYERS: tuple[Role, ...] = (
    (Role.WEREWOLF,) * 3 + (Role.VILLAGER,) * 3 + (Role.SEER, Role.WITCH, Role.HUNTER)
)

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.WEREWOLF: "You are a werewolf. Each night your pack kills one player. Hide your role by day.",
    Role.VILLAGER: "You are a villager. Find the werewolves and vote them out.",
    Role.SEER: "You are the seer. Each night you learn whether one player is a werewolf.",
    Role.WITCH: "You are the witch. You have one potion to save the night's victim and one poison to kill.",
    Role.HUNTER: "You are the hunter. If you die, you shoot one player.",
}

_PLAYER_MENTION = re.compile(r"player\s*#?\s*(\d+)", re.IGNORECASE)
_JUST_A_NUMBER = re.compile(r"\s*#?(\d+)[\s.!]*")


def parse_choice(text: str, candidates: Sequence[str]) -> str | None:
    """The first candidate the answer names ("Player4", "player 4"), or an answer that is just "4"; else None.

    Mentions that are not candidates (a dead player, oneself) are skipped, so "not Player2, Player5" with
    Player2 dead gives Player5. A number inside other words ("Night 2") names nobody."""
    by_number = {int(name.removeprefix("Player")): name for name in candidates}
    for match in _PLAYER_MENTION.finditer(text):
        name = by_number.get(int(match.group(1)))
        if name is not None:
            return name
    alone = _JUST_A_NUMBER.fullmatch(text)
    return by_number.get(int(alone.group(1))) if alone else None


@dataclass(frozen=True)
class WitchChoice:
    save: bool = False
    poison: str | None = None


def parse_witch(text: str, can_save: bool, poison_candidates: Sequence[str]) -> WitchChoice:
    """SAVE and/or POISON PlayerN in any order; anything else (PASS included) uses no potion."""
    lowered = text.lower()
    save = can_save and "save" in lowered
    poison = None
    at = lowered.find("poison")
    if at >= 0 and poison_candidates:
        poison = parse_choice(text[at:], poison_candidates)
    return WitchChoice(save=save, poison=poison)


@dataclass
class Player:
    name: str
    role: Role
    alive: bool = True

    @property
    def team(self) -> Team:
        return team_of(self.role)


@dataclass
class GameResult:
    winner: Team | None  # None: a draw (max_rounds reached)
    rounds: int
    roles: dict[str, Role]
    survivors: list[str]
    log: list[str]
    fallbacks: int  # answers that named no valid choice

    def outcome(self, team: Team) -> str:
        if self.winner is None:
            return "draw"
        return "won" if self.winner is team else "lost"


class PlayerIO(Protocol):
    """How the game talks to its players."""

    def inform(self, name: str, text: str) -> None:
        """Tell a player something (delivered with the next question they are asked)."""

    async def ask(self, name: str, question: str) -> str:
        """Ask a player a question and return their answer as text."""


class Game:
    """The state of one game and the rules that change it. Every random choice comes from `rng` (seeded)."""

    def __init__(self, seed: int, *, roles: Sequence[Role] = NINE_PLAYERS, max_rounds: int = 2) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        wolves = sum(role is Role.WEREWOLF for role in roles)
        if wolves == 0 or wolves >= len(roles) - wolves:
            raise ValueError(
                f"roles must include at least one werewolf and more good players than werewolves, got {roles}"
            )
        self.rng = random.Random(seed)
        seating = list(roles)
        self.rng.shuffle(seating)
        self.players = [Player(f"Player{i + 1}", role) for i, role in enumerate(seating)]
        self.max_rounds = max_rounds
        self.round = 0
        self.save_potion = True
        self.poison_potion = True
        self.winner: Team | None = None
        self.log: list[str] = []  # the moderator's view: everything that happened, secrets included
        self.fallbacks = 0

    # -- looking things up -------------------------------------------------------------------------------------

    def player(self, name: str) -> Player:
        for player in self.players:
            if player.name == name:
                return player
        raise KeyError(f"no player named {name!r}")

    def living(self, role: Role | None = None, team: Team | None = None) -> list[Player]:
        return [
            p
            for p in self.players
            if p.alive and (role is None or p.role is role) and (team is None or p.team is team)
        ]

    def living_names(self, exclude: Iterable[str] = ()) -> list[str]:
        skip = set(exclude)
        return [p.name for p in self.living() if p.name not in skip]

    def check_winner(self) -> Team | None:
        wolves = len(self.living(team=Team.WEREWOLVES))
        good = len(self.living(team=Team.VILLAGE))
        if wolves == 0:
            self.winner = Team.VILLAGE
        elif wolves >= good:
            self.winner = Team.WEREWOLVES
        return self.winner

    # -- resolving choices -------------------------------------------------------------------------------------

    def _random(self, candidates: Sequence[str]) -> str:
        return self.rng.choice(list(candidates))

    def choose_victim(self, picks: Mapping[str, str | None]) -> str:
        """The werewolves' victim: the most picked valid target; ties are broken at random (seeded); with no
        valid pick at all, a random living non-werewolf (the pack always kills)."""
        candidates = [p.name for p in self.living(team=Team.VILLAGE)]
        valid = [target for target in picks.values() if target in candidates]
        self.fallbacks += len(picks) - len(valid)
        return self._most_named(valid) if valid else self._random(candidates)

    def seer_target(self, seer: str, pick: str | None) -> str:
        """Whom the seer checks: her pick, or a random other living player if it is not one."""
        candidates = self.living_names(exclude=[seer])
        if pick in candidates:
            return pick
        self.fallbacks += 1
        return self._random(candidates)

    def witch_choice(self, witch: str, victim: str | None, text: str) -> WitchChoice:
        """What the witch does, within the potions she has left. Poisoning herself is not allowed."""
        choice = parse_witch(
            text,
            can_save=self.save_potion and victim is not None,
            poison_candidates=self.living_names(exclude=[witch]) if self.poison_potion else [],
        )
        if choice.save:
            self.save_potion = False
        if choice.poison is not None:
            self.poison_potion = False
        return choice

    def resolve_night(self, victim: str | None, choice: WitchChoice) -> list[str]:
        """Who dies tonight, in seat order: the victim unless saved, and whoever was poisoned."""
        dying = set()
        if victim is not None and not choice.save:
            dying.add(victim)
        if choice.poison is not None:
            dying.add(choice.poison)
        dead = [p.name for p in self.players if p.name in dying]
        for name in dead:
            self.player(name).alive = False
        return dead

    def tally(self, votes: Mapping[str, str | None]) -> str | None:
        """Who is voted out: the most voted valid target (ties broken at random, seeded); invalid votes abstain,
        and nobody is out when every vote abstains."""
        candidates = set(self.living_names())
        valid = [target for target in votes.values() if target in candidates]
        self.fallbacks += len(votes) - len(valid)
        return self._most_named(valid) if valid else None

    def shoot(self, hunter: str, target: str | None) -> str | None:
        """The hunter's shot: his valid target dies; an invalid one means he holds his fire."""
        if target is None or target not in self.living_names(exclude=[hunter]):
            self.fallbacks += 1
            return None
        self.player(target).alive = False
        return target

    def eliminate(self, name: str) -> None:
        self.player(name).alive = False

    def _most_named(self, names: list[str]) -> str:
        counts = Counter(names)
        top = max(counts.values())
        tied = sorted(name for name, count in counts.items() if count == top)
        return tied[0] if len(tied) == 1 else self.rng.choice(tied)

    def result(self) -> GameResult:
        return GameResult(
            winner=self.winner,
            rounds=self.round,
            roles={p.name: p.role for p in self.players},
            survivors=self.living_names(),
            log=list(self.log),
            fallbacks=self.fallbacks,
        )


# -- the moderator ---------------------------------------------------------------------------------------------


def system_prompt(game: Game, name: str) -> str:
    """What a player knows from the start: the table, their role, and (for a werewolf) the pack."""
    player = game.player(name)
    lines = [
        f"You are {name} in a game of werewolves with {len(game.players)} players: "
        f"{', '.join(p.name for p in game.players)}.",
        ROLE_DESCRIPTIONS[player.role],
    ]
    if player.role is Role.WEREWOLF:
        pack = [p.name for p in game.players if p.role is Role.WEREWOLF and p.name != name]
        lines.append(f"The other werewolves are {', '.join(pack)}.")
    lines.append("Answer in one short sentence.")
    return " ".join(lines)


def _choice_question(what: str, candidates: Sequence[str]) -> str:
    return f"{what} Choose one of: {', '.join(candidates)}. Answer with the player's name."


class Moderator:
    """Runs the phases of a `Game` by asking the players through a `PlayerIO`."""

    def __init__(self, game: Game, io: PlayerIO, *, discussion: bool = True) -> None:
        self.game = game
        self.io = io
        self.discussion = discussion

    def announce(self, text: str, to: Iterable[str] | None = None) -> None:
        """Tell the living players (or only `to`), and write it in the log."""
        names = list(to) if to is not None else self.game.living_names()
        for name in names:
            self.io.inform(name, text)
        audience = "" if to is None else f" [to {', '.join(names)}]"
        self.game.log.append(f"{text}{audience}")

    async def play(self) -> GameResult:
        game = self.game
        while game.round < game.max_rounds and game.winner is None:
            game.round += 1
            await self.night()
            if game.winner is None:
                await self.day()
        return game.result()

    async def night(self) -> None:
        game = self.game
        self.announce(f"Night {game.round}.")
        wolves = [p.name for p in game.living(role=Role.WEREWOLF)]
        targets = [p.name for p in game.living(team=Team.VILLAGE)]
        seers = [p.name for p in game.living(role=Role.SEER)]
        # The pack and the seer act at the same time: their questions go out together (one engine batch).
        asks = [
            self.io.ask(w, _choice_question(f"Night {game.round}: which player does the pack kill?", targets))
            for w in wolves
        ]
        asks += [
            self.io.ask(s, _choice_question("Whom do you check tonight?", game.living_names(exclude=[s])))
            for s in seers
        ]
        answers = await asyncio.gather(*asks)
        picks = {w: parse_choice(answer, targets) for w, answer in zip(wolves, answers, strict=False)}
        victim = game.choose_victim(picks)
        self.announce(f"The pack attacks {victim}.", to=wolves)
        for seer, answer in zip(seers, answers[len(wolves) :], strict=True):
            target = game.seer_target(seer, parse_choice(answer, game.living_names(exclude=[seer])))
            verdict = "is a werewolf" if game.player(target).role is Role.WEREWOLF else "is not a werewolf"
            self.announce(f"{target} {verdict}.", to=[seer])
        choice = WitchChoice()
        for witch in [p.name for p in game.living(role=Role.WITCH)]:
            if game.save_potion or game.poison_potion:
                choice = game.witch_choice(
                    witch, victim, await self.io.ask(witch, self._witch_question(victim))
                )
                if choice.save or choice.poison:
                    used = ["save" if choice.save else "", f"poison {choice.poison}" if choice.poison else ""]
                    game.log.append(f"The witch uses: {', '.join(u for u in used if u)}.")
        dead = game.resolve_night(victim, choice)
        news = f"{', '.join(dead)} died last night." if dead else "nobody died last night."
        # The dead hear it too: a killed hunter is asked next whom he shoots.
        self.announce(f"Day {game.round}: {news}", to=[*game.living_names(), *dead])
        await self.after_deaths(dead)

    def _witch_question(self, victim: str) -> str:
        game = self.game
        options = []
        if game.save_potion:
            options.append(f"SAVE to save {victim}")
        if game.poison_potion:
            options.append("POISON and a player's name to kill them")
        return f"The pack attacked {victim}. Answer {', or '.join(options)}, or PASS."

    async def day(self) -> None:
        game = self.game
        if self.discussion:
            # One sentence each, in seat order: everyone hears what the earlier speakers said.
            for name in game.living_names():
                said = await self.io.ask(name, f"Day {game.round}: say one sentence to the other players.")
                said = " ".join(said.split())[:300]
                self.announce(f"{name} says: {said}", to=game.living_names(exclude=[name]))
        voters = game.living_names()
        # Each voter is offered everyone else (the questions still go out together: one engine batch).
        options = {v: game.living_names(exclude=[v]) for v in voters}
        what = f"Day {game.round}: vote to eliminate a player."
        answers = await asyncio.gather(*(self.io.ask(v, _choice_question(what, options[v])) for v in voters))
        votes = {v: parse_choice(a, options[v]) for v, a in zip(voters, answers, strict=True)}
        out = game.tally(votes)
        shown = ", ".join(f"{v}->{t or 'abstain'}" for v, t in votes.items())
        if out is None:
            self.announce(f"Votes: {shown}. Nobody is out.")
            return
        game.eliminate(out)
        self.announce(f"Votes: {shown}. {out} is out.", to=voters)
        await self.after_deaths([out])

    async def after_deaths(self, dead: list[str]) -> None:
        """A dead hunter shoots; then the game may be over."""
        game = self.game
        for name in dead:
            if game.player(name).role is Role.HUNTER:
                candidates = game.living_names(exclude=[name])
                answer = await self.io.ask(
                    name, _choice_question("You are dying: whom do you shoot?", candidates)
                )
                shot = game.shoot(name, parse_choice(answer, candidates))
                if shot is not None:
                    self.announce(f"{name} was the hunter and shot {shot}.")
        if game.check_winner() is not None:
            game.log.append(f"Game over: the {game.winner} win.")


async def play(game: Game, io: PlayerIO, *, discussion: bool = True) -> GameResult:
    """Play `game` to the end (a win, or `max_rounds`) with answers from `io`."""
    return await Moderator(game, io, discussion=discussion).play()


@dataclass
class ScriptedPlayers:
    """A `PlayerIO` that answers from a function of (player, question): for tests and dry runs."""

    answer: Callable[[str, str], str]
    told: dict[str, list[str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def inform(self, name: str, text: str) -> None:
        self.told.setdefault(name, []).append(text)

    async def ask(self, name: str, question: str) -> str:
        self.asked.append((name, question))
        return self.answer(name, question)
