"""The vocabulary of a blue/green release: colors, traffic weights, strategies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


class BadInput(ValueError):
    """Input the user must fix; the CLI prints it as one line and exits 2."""


def parse_color(value: str) -> Color:
    if value == "blue":
        return "blue"
    if value == "green":
        return "green"
    raise BadInput(f"color must be blue or green (got {value!r})")


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


MAX_WEIGHT = 255  # Route53's limit for one weighted record


@dataclass(frozen=True)
class Traffic:
    """Weights of both colors and the generation they carry.

    cutover always writes weights that sum to 100 (percentages). What it reads may be
    anything a router allows (Route53: 0-255 each, relative), e.g. after a hand edit in the
    console: such weights are kept as they are, so a status shows the real split and a
    compare-and-swap names the live records exactly. `written_by_cutover` tells them apart.

    The generation increases by one with every change cutover makes; a writer states the
    generation it read, so a change based on a stale read fails instead of overwriting.
    """

    blue: int
    green: int
    generation: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.blue <= MAX_WEIGHT and 0 <= self.green <= MAX_WEIGHT):
            raise BadInput(f"weights must be 0-{MAX_WEIGHT} (got blue {self.blue}, green {self.green})")

    @classmethod
    def all_on(cls, color: Color, generation: int = 0) -> Traffic:
        return cls.with_weight(color, 100, generation)

    @classmethod
    def with_weight(cls, color: Color, weight: int, generation: int = 0) -> Traffic:
        """`color` gets `weight` percent, the other color the rest."""
        if not 0 <= weight <= 100:
            raise BadInput(f"weight must be between 0 and 100 (got {weight})")
        if color == "blue":
            return cls(weight, 100 - weight, generation)
        return cls(100 - weight, weight, generation)

    def weight(self, color: Color) -> int:
        return self.blue if color == "blue" else self.green

    def share(self, color: Color) -> float:
        """The percentage of requests `color` gets (weights are relative; when both are 0,
        Route53 answers with both records alike)."""
        total = self.blue + self.green
        return 50.0 if total == 0 else 100.0 * self.weight(color) / total

    @property
    def written_by_cutover(self) -> bool:
        """Weights as cutover writes them: percentages summing to 100."""
        return self.blue + self.green == 100

    @property
    def active(self) -> Color | None:
        """The color with all the traffic, or None while traffic is split."""
        if self.green == 0 and self.blue > 0:
            return "blue"
        if self.blue == 0 and self.green > 0:
            return "green"
        return None

    def same_weights(self, other_traffic: Traffic) -> bool:
        return (self.blue, self.green) == (other_traffic.blue, other_traffic.green)

    def as_dict(self) -> dict[str, int]:
        return {"blue": self.blue, "green": self.green, "generation": self.generation}

    def __str__(self) -> str:
        if self.written_by_cutover:
            return f"blue {self.blue} / green {self.green}"
        return (
            f"blue {self.blue} / green {self.green} (weights not written by cutover: "
            f"{self.share('blue'):.1f}% / {self.share('green'):.1f}%)"
        )


PAUSE = 0  # a step that moves nothing and waits for `cutover promote` (or `cutover abort`)
DEFAULT_STEPS = (10, 50, 100)  # canary:10,50,100

_CANARY = re.compile(r"^canary:((?:\d{1,3}|pause)(?:,(?:\d{1,3}|pause))*)$")
_LINEAR = re.compile(r"^linear:(\d{1,3})$")


def parse_strategy(text: str) -> tuple[int, ...]:
    """The weights the new color takes, step by step, ending at 100.

    `all-at-once` -> (100,); `canary:10,50,100` -> (10, 50, 100) (strictly increasing, 100
    appended when missing); `canary:10,50,pause,100` -> (10, 50, PAUSE, 100): after 50% it
    waits for `cutover promote`; `linear:25` -> (25, 50, 75, 100).
    """
    value = text.strip()
    if value == "all-at-once":
        return (100,)
    if match := _CANARY.match(value):
        parts = match[1].split(",")
        steps = tuple(PAUSE if part == "pause" else int(part) for part in parts)
        weights = [s for s in steps if s != PAUSE]
        if not weights or any(not 1 <= w <= 100 for w in weights) or weights != sorted(set(weights)):
            raise BadInput(f"canary steps must be increasing weights from 1 to 100 (got {value!r})")
        if parts[0] == "pause" or "pause,pause" in match[1] or (parts[-1] == "pause" and weights[-1] == 100):
            raise BadInput(
                f"`pause` goes between two weights, once (e.g. canary:10,50,pause,100) (got {value!r})"
            )
        return steps if steps[-1] == 100 else (*steps, 100)
    if match := _LINEAR.match(value):
        step = int(match[1])
        if not 1 <= step <= 100:
            raise BadInput(f"linear step must be from 1 to 100 (got {value!r})")
        return (*range(step, 100, step), 100)
    raise BadInput(
        f"strategy must be all-at-once, canary:<w1,w2,...> (with `pause` between two weights) "
        f"or linear:<step> (got {value!r})"
    )


def describe_steps(steps: tuple[int, ...]) -> str:
    return ", ".join("pause" if s == PAUSE else f"{s}%" for s in steps)
