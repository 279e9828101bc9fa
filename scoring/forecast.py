"""When will each stratum reach its target, and each unit its ``min_raters``? (pure core)

What is estimated
-----------------
Per stratum ``h``, from the attempts so far:

* the chance an attempt reaches a person, by the attempt's number ``k``
  (1, 2, ...; cases still open after many attempts are the hard ones, so the
  chance falls with ``k``), ``c[h, k]``;
* the chance a person reached completes the interview (cooperation), ``q[h]``,
  and the chance they refuse for good, ``r[h]``;
* the dialer's capacity: the attempts of the last calling day observed
  (``sum_h a[h] x open[h]``, ``a[h]`` the attempts per open case of stratum
  ``h`` that day), shared in each simulated day by the cases still open (at
  most ``max_pace`` attempts per case a day), so that strata that finish free
  attempts for the others.

Each chance has a Beta posterior from a prior whose mean is the pooled rate of
all strata (for ``c``: of attempt number ``k``, or of the highest number seen)
and whose weight is ``prior_strength`` trials; so a stratum with few attempts
borrows from the others (beta-binomial smoothing).

The projection
--------------
``n_sims`` simulations of the calling days left: each draws the chances from
their posteriors (parameter uncertainty), then day by day the open cases are
tried capacity / open times on average (binomially), reached, complete or refuse
(binomially; process noise), and a case whose attempts reach ``max_attempts``
closes.  A stratum's completion date in a simulation is the first calling day
its completes reach the target; the projection is the median date and the
interval the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (dates after
the last day simulated count as "later").  Units are projected the same way
from their open cases per stratum, with the same parameter draws; a complete
adds a rater with the unit's observed raters-per-complete share.

What would close the gap (stratum whose median completes at the end date fall
short of its target): the cases to release, shortfall / the chance a fresh case
completes by the end date; the extra attempts, shortfall / completes per
attempt, which the adapter turns into interviewer hours or IVR lines.

Only the standard library and numpy (``scoring`` stays pure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

__all__ = ["Projection", "StratumState", "UnitState", "forecast"]


@dataclass(frozen=True)
class StratumState:
    """A stratum's field as it stands.

    ``open_by_attempts[k]`` is the number of open cases (released, not final)
    that have had ``k`` attempts; ``attempts_by_number[k]`` and
    ``contacts_by_number[k]`` count attempts number ``k + 1`` made so far and
    those that reached someone; ``contacts``, ``completes_from_contacts`` and
    ``refusals`` the outcomes of the contacts; ``pace`` attempts per open case
    on the last calling day.
    """

    key: str
    target: int
    completed: int
    open_by_attempts: Sequence[int]
    attempts_by_number: Sequence[int]
    contacts_by_number: Sequence[int]
    completes_from_contacts: int
    refusals: int
    pace: float
    held: int = 0                   # cases not yet released (next replicate)


@dataclass(frozen=True)
class UnitState:
    """A unit's raters so far and its open cases per stratum and attempts used."""

    key: str
    min_raters: int
    raters: int
    open_by_stratum: Mapping[str, Sequence[int]]
    raters_per_complete: float = 1.0


@dataclass(frozen=True)
class Projection:
    """The projected date a stratum reaches its target (or a unit its ``min_raters``)."""

    key: str
    kind: str                       # "stratum" or "unit"
    target: int
    now: int
    median_date: date | None        # None: after the last day simulated
    low_date: date | None
    high_date: date | None
    reached: bool                   # already there
    p_by_end: float                 # chance of reaching it by the end date
    expected_by_end: float          # median count at the end date
    band: list[tuple[date, float, float, float]] = field(default_factory=list)
    shortfall: int = 0
    cases_to_release: int | None = None
    extra_attempts: int | None = None

    def as_dict(self) -> dict:
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"key": self.key, "kind": self.kind, "target": self.target, "now": self.now,
                "reached": self.reached, "date": iso(self.median_date),
                "date_low": iso(self.low_date), "date_high": iso(self.high_date),
                "p_by_end": round(self.p_by_end, 3), "expected_by_end": self.expected_by_end,
                "shortfall": self.shortfall, "cases_to_release": self.cases_to_release,
                "extra_attempts": self.extra_attempts,
                "band": [{"date": d.isoformat(), "low": lo, "median": med, "high": hi}
                         for d, lo, med, hi in self.band]}


def _beta(rng, c, n, mean, strength, size):
    a = c + strength * mean
    b = (n - c) + strength * (1 - mean)
    return rng.beta(max(a, 1e-6), max(b, 1e-6), size=size)


def forecast(strata: Sequence[StratumState], units: Sequence[UnitState] = (), *,
             days: Sequence[date], end_date: date, max_attempts: int, n_sims: int = 1000,
             level: float = 0.9, prior_strength: float = 20.0, max_pace: float = 4.0,
             rng: np.random.Generator) -> list[Projection]:
    """Project every stratum and unit over the calling ``days`` still ahead (see module doc).

    Parameters
    ----------
    strata, units
        The field as it stands (:class:`StratumState`, :class:`UnitState`).
    days
        The calling days ahead, in order, possibly past ``end_date`` (to date
        a projection that falls after it).
    end_date
        The campaign's last day.
    max_attempts
        A case closes after this many attempts.
    n_sims, level, prior_strength
        Simulations, interval level, Beta prior weight in trials.
    max_pace
        At most this many attempts per open case and calling day (retry delays).
    rng
        A ``numpy.random.Generator`` (same seed, same projection).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_sims < 10:
        raise ValueError(f"n_sims must be >= 10, got {n_sims!r}")
    if not prior_strength > 0:
        raise ValueError(f"prior_strength must be > 0, got {prior_strength!r}")
    days = list(days)
    K = max_attempts
    H = len(strata)
    index = {s.key: i for i, s in enumerate(strata)}
    # pooled rates: the prior means
    att = np.zeros(K)
    con = np.zeros(K)
    for s in strata:
        for k in range(min(K, len(s.attempts_by_number))):
            att[k] += s.attempts_by_number[k]
            con[k] += s.contacts_by_number[k]
    pooled_c = np.empty(K)
    last = 0.5
    for k in range(K):  # an attempt number not seen yet takes the highest number seen
        if att[k] > 0:
            last = (con[k] + 1) / (att[k] + 2)
        pooled_c[k] = last
    contacts = sum(sum(s.contacts_by_number) for s in strata)
    pooled_q = (sum(s.completes_from_contacts for s in strata) + 1) / (contacts + 2)
    pooled_r = (sum(s.refusals for s in strata) + 1) / (contacts + 2)
    pooled_r = min(pooled_r, 1 - pooled_q - 1e-6)
    # parameter draws, shape (n_sims, H[, K])
    c = np.empty((n_sims, H, K))
    q = np.empty((n_sims, H))
    r = np.empty((n_sims, H))
    for i, s in enumerate(strata):
        for k in range(K):
            n_k = s.attempts_by_number[k] if k < len(s.attempts_by_number) else 0
            c_k = s.contacts_by_number[k] if k < len(s.contacts_by_number) else 0
            c[:, i, k] = _beta(rng, c_k, n_k, pooled_c[k], prior_strength, n_sims)
        n_con = sum(s.contacts_by_number)
        q[:, i] = _beta(rng, s.completes_from_contacts, n_con, pooled_q, prior_strength, n_sims)
        rr = _beta(rng, s.refusals, n_con, pooled_r / (1 - pooled_q), prior_strength, n_sims)
        r[:, i] = rr * (1 - q[:, i])  # refusal among the reached who do not complete
    open_now = np.array([sum(s.open_by_attempts) for s in strata], dtype=float)
    capacity = float(sum(max(s.pace, 0.0) * o for s, o in zip(strata, open_now, strict=True)))

    def simulate(open_counts: np.ndarray, who: np.ndarray, rngl, paces=None):
        """open_counts (P, K) per pool of stratum ``who[p]``; completes per day (n_sims, D, P).

        The dialer's attempts per day (``capacity``) are shared by the open cases
        of the pools (at most ``max_pace`` attempts per case a day); ``paces``
        (n_sims, D) imposes the per-case pace instead (units follow their strata).
        """
        n = np.broadcast_to(open_counts, (n_sims, *open_counts.shape)).astype(np.int64).copy()
        cp, qp = c[:, who, :], q[:, who][:, :, None]
        rp = np.clip(r[:, who][:, :, None] / np.maximum(1 - qp, 1e-9), 0, 1)
        rounds = max(1, int(math.ceil(max_pace)))
        out = np.zeros((n_sims, len(days), len(who)), dtype=np.int64)
        used = np.zeros((n_sims, len(days)))
        for d in range(len(days)):
            if paces is None:
                total = n.sum(axis=(1, 2)).astype(float)
                pace = np.minimum(capacity / np.maximum(total, 1.0), max_pace)
            else:
                pace = paces[:, d]
            used[:, d] = pace
            share = np.broadcast_to((pace / rounds)[:, None, None], n.shape)
            done = np.zeros((n_sims, len(who)), dtype=np.int64)
            for _ in range(rounds):
                tried = rngl.binomial(n, share)
                reached = rngl.binomial(tried, cp)
                comp = rngl.binomial(reached, np.broadcast_to(qp, n.shape))
                ref = rngl.binomial(reached - comp, np.broadcast_to(rp, n.shape))
                done += comp.sum(axis=2)
                moved = tried - comp - ref      # tried, still open, one attempt more
                n = n - tried
                n[:, :, 1:] += moved[:, :, :-1]  # the last attempt closes the case
            out[:, d, :] = done
        return out, used

    def expected(paces):
        """Per case starting with k attempts, its expected cumulative completes by each day:
        (n_sims, H, K, D), given each simulation's chances and the strata's pace."""
        rounds = max(1, int(math.ceil(max_pace)))
        state = np.broadcast_to(np.eye(K), (n_sims, H, K, K)).copy()   # [.., start, now]
        cq = (c * q[:, :, None])[:, :, None, :]
        cr = (c * r[:, :, None])[:, :, None, :]
        cum = np.zeros((n_sims, H, K))
        out = np.zeros((n_sims, H, K, len(days)))
        for d in range(len(days)):
            share = (paces[:, d] / rounds)[:, None, None, None]
            for _ in range(rounds):
                tried = state * share
                comp = tried * cq
                moved = tried - comp - tried * cr
                state = state - tried
                state[..., 1:] += moved[..., :-1]
                cum += comp.sum(axis=3)
            out[..., d] = cum
        return out

    results: list[Projection] = []
    end_idx = sum(d <= end_date for d in days) - 1
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2

    def summarise(key, kind, target, now, daily, held_case_rate):
        cum = now + np.cumsum(daily, axis=1)              # (n_sims, D)
        reached_now = now >= target
        first = np.where((cum >= target).any(axis=1), (cum >= target).argmax(axis=1), len(days))
        if reached_now:
            first[:] = -1

        picks = np.quantile(first, [0.5, lo_q, hi_q], method="inverted_cdf").astype(int)

        def day_at(i):
            return None if i >= len(days) else (days[i] if i >= 0 else None)

        at_end = cum[:, end_idx] if end_idx >= 0 else np.full(n_sims, now)
        med_end = float(np.median(at_end))
        lows, meds, highs = np.quantile(cum, [lo_q, 0.5, hi_q], axis=0)
        band = [(d, round(float(lo), 1), round(float(me), 1), round(float(hi), 1))
                for d, lo, me, hi in zip(days, lows, meds, highs, strict=True)]
        shortfall = max(0, int(math.ceil(target - med_end)))
        release = extra = None
        if shortfall and held_case_rate is not None:
            fresh, per_attempt = held_case_rate
            release = int(math.ceil(shortfall / fresh)) if fresh > 0 else None
            extra = int(math.ceil(shortfall / per_attempt)) if per_attempt > 0 else None
        return Projection(key=key, kind=kind, target=target, now=now,
                          median_date=day_at(picks[0]) if not reached_now else None,
                          low_date=day_at(picks[1]) if not reached_now else None,
                          high_date=day_at(picks[2]) if not reached_now else None,
                          reached=reached_now,
                          p_by_end=1.0 if reached_now else float(np.mean(first <= end_idx)),
                          expected_by_end=round(med_end, 1), band=band, shortfall=shortfall,
                          cases_to_release=release, extra_attempts=extra)

    strata_pace = None
    if H:
        open_s = np.array([[s.open_by_attempts[k] if k < len(s.open_by_attempts) else 0
                            for k in range(K)] for s in strata])
        daily, strata_pace = simulate(open_s, np.arange(H), rng)
        chain = expected(strata_pace)
        for i, s in enumerate(strata):
            f = float(np.mean(chain[:, i, 0, end_idx])) if end_idx >= 0 else 0.0
            # more attempts help only while cases are open; else only a release does
            per_attempt = (float(np.mean(c[:, i, :].mean(axis=1) * q[:, i]))
                           if open_now[i] > 0 else 0.0)
            results.append(summarise(s.key, "stratum", s.target, s.completed, daily[:, :, i],
                                     (f, per_attempt)))
        if units:
            opens = np.zeros((len(units), H, K))
            for j, u in enumerate(units):
                for skey, counts in u.open_by_stratum.items():
                    if skey in index:
                        for k in range(min(K, len(counts))):
                            opens[j, index[skey], k] += counts[k]
            per_unit = np.einsum("shkd,uhk->sdu", chain, opens)
            for j, u in enumerate(units):
                raters = np.floor(per_unit[:, :, j] * u.raters_per_complete + 1e-9)
                results.append(summarise(u.key, "unit", u.min_raters, u.raters,
                                         np.diff(raters, axis=1, prepend=0), None))
    return results
