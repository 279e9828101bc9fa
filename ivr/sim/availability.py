"""When simulated respondents can be reached: time-of-day availability by group and town.

The simulator's default respondent (:data:`ivr.sim.behaviour.DEFAULT_ANSWER_BY_HOUR`)
answers alike whatever their group.  Real fields differ: residents'
representatives (many retired or farming) answer in the morning and the early
evening, deputies and committee members (officials) at lunch and in the evening,
business representatives in the afternoon and late evening and more on Saturday.
:func:`answer_by_hour` gives those profiles, per local weekday, and shifts them
by town: each town gets a seeded evening/morning tilt (the county seat
``chengguan`` is fixed as the most evening-leaning), derived from the town code
with :func:`zlib.crc32`, so that every run, process and machine sees the same
towns.  :func:`persona_for` draws a :class:`~ivr.sim.behaviour.Persona` with a
case's group and town; the webhook simulator takes it through
``Simulator.set_persona`` and the field simulation (:mod:`ivr.sim.fieldsim`)
uses the same profiles.

The profiles (chance an attempt at that local hour is answered, before the
person's own propensity, drawn uniformly from 0.6..1.0):

=============  =========  ==========  ===========  ==========
group          09-12      12-14:30    14:30-17     17-20:30
=============  =========  ==========  ===========  ==========
residents      0.55       0.45        0.35         0.40
deputies       0.10       0.45        0.12         0.65
business       0.08       0.20        0.45         0.35
=============  =========  ==========  ===========  ==========

Saturday: deputies and business representatives answer mornings at 0.45.
Unknown groups get the simulator's default profile.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from ivr.sim.behaviour import DEFAULT_ANSWER_BY_HOUR, BehaviourModel, Persona

__all__ = ["GROUP_PROFILES", "answer_by_hour", "persona_for", "town_tilt"]

#: (morning 9-12, midday 12-14:30, afternoon 14:30-17, evening 17-20:30) answer chances.
GROUP_PROFILES: dict[str, tuple[float, float, float, float]] = {
    "residents": (0.55, 0.45, 0.35, 0.40),
    "deputies": (0.10, 0.45, 0.12, 0.65),
    "business": (0.08, 0.20, 0.45, 0.35),
}
_SATURDAY_MORNING = {"deputies": 0.45, "business": 0.45}


def town_tilt(town: str | None) -> float:
    """A town's evening tilt in [-0.3, 0.3] (seeded by its code; ``chengguan`` is +0.3)."""
    if not town:
        return 0.0
    if town == "chengguan":
        return 0.3
    return (zlib.crc32(town.encode()) % 1000) / 1000 * 0.6 - 0.3


def answer_by_hour(group: str | None, town: str | None, weekday: int) -> tuple[float, ...]:
    """24 local-hour answer chances for ``group`` in ``town`` on ``weekday`` (Monday = 0)."""
    profile = GROUP_PROFILES.get(group or "")
    if profile is None:
        return DEFAULT_ANSWER_BY_HOUR
    morning, midday, afternoon, evening = profile
    if weekday == 5:
        morning = _SATURDAY_MORNING.get(group, morning)
    tilt = town_tilt(town)
    morning *= 1 - tilt
    evening *= 1 + tilt
    hours = [0.05] * 24
    for h in range(7, 24):
        hours[h] = (morning if h < 12 else midday if h < 14 else afternoon if h < 17
                    else evening if h < 21 else 0.2)
    return tuple(min(1.0, max(0.0, p)) for p in hours)


def persona_for(model: BehaviourModel, group: str | None, town: str | None, weekday: int,
                rng: np.random.Generator) -> Persona:
    """A persona drawn from ``model`` whose answer chances follow the group and town profile."""
    persona = model.draw_persona(rng)
    if persona.line != "human" or persona.answer_by_hour is None:
        return persona
    scale = max(persona.answer_by_hour) / max(model.answer_by_hour)  # the drawn propensity
    hours = tuple(min(1.0, p * scale) for p in answer_by_hour(group, town, weekday))
    return replace(persona, answer_by_hour=hours)
