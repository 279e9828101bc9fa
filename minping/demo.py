"""``minping demo``: the whole job on a synthetic campaign.

This version loads the configuration into a fresh database and generates a
synthetic sampling frame (clearly marked: the frame is named "synthetic" and
every contact carries ``synthetic: true``), then prints what the database holds.
Numbers are valid Chinese mobile numbers, and no call ever leaves the machine:
the demo only talks to the local Twilio simulator.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import numpy as np
import phonenumbers
from sqlalchemy import func, select, update

from minping import calling, cells
from minping.campaign import sync_campaign
from minping.config import load_config
from minping.db import Database
from minping.errors import MinpingError
from minping.models import Frame

SYNTHETIC_FRAME = "synthetic demo frame (合成演示样本框)"

#: Share of each respondent group in the synthetic frame.
GROUP_SHARES = {"residents": 0.72, "deputies": 0.06, "business": 0.22}
#: Mobile prefixes of the three mainland carriers (China Mobile, Unicom, Telecom).
MOBILE_PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "147",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "178",
    "182",
    "183",
    "184",
    "187",
    "188",
    "198",
    "130",
    "131",
    "132",
    "145",
    "155",
    "156",
    "166",
    "175",
    "176",
    "185",
    "186",
    "133",
    "149",
    "153",
    "173",
    "177",
    "180",
    "181",
    "189",
    "191",
    "199",
]


@dataclass(frozen=True)
class SyntheticContact:
    phone: str
    group: str
    town: str


def synthetic_frame(cfg, size: int, *, rng: np.random.Generator) -> list[SyntheticContact]:
    """Generate ``size`` distinct contacts across the configured groups and towns.

    Groups follow :data:`GROUP_SHARES` (equal shares for groups it does not
    name); the county seat (the first town) holds about a third of the contacts
    and the other towns share the rest with some spread, as real county
    registers look.  Every number passes ``phonenumbers.is_valid_number``.
    """
    groups = [g.id for g in cfg.groups]
    g_share = np.array([GROUP_SHARES.get(g, 1.0) for g in groups], dtype=float)
    g_share /= g_share.sum()
    towns = [t.id for t in cfg.towns]
    t_share = rng.uniform(0.6, 1.4, size=len(towns))
    t_share[0] = t_share[1:].sum() / 2 if len(towns) > 1 else 1.0
    t_share /= t_share.sum()

    phones: set[str] = set()
    out: list[SyntheticContact] = []
    group_idx = rng.choice(len(groups), size=size, p=g_share)
    town_idx = rng.choice(len(towns), size=size, p=t_share)
    prefixes = np.array(MOBILE_PREFIXES)
    i = 0
    while len(out) < size:
        batch = size - len(out)
        pre = rng.choice(prefixes, size=batch * 2)
        rest = rng.integers(0, 10**8, size=batch * 2)
        for p, r in zip(pre, rest, strict=True):
            national = f"{p}{r:08d}"
            e164 = "+86" + national
            if e164 in phones:
                continue
            if not phonenumbers.is_valid_number(phonenumbers.parse(e164)):
                continue
            phones.add(e164)
            out.append(SyntheticContact(e164, groups[group_idx[i]], towns[town_idx[i]]))
            i += 1
            if len(out) == size:
                break
    return out


def _every(seconds: float, fn: Callable[[str], None]) -> Callable[[str], None]:
    """Pass at most one progress line per ``seconds`` of wall time to ``fn``."""
    last = [0.0]

    def note(line: str) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            fn(line)

    return note


def write_frame_csv(cfg, contacts: list[SyntheticContact], path: Path) -> Path:
    """Write the synthetic frame as a polling center would get it: a CSV with Chinese headers."""
    groups = {g.id: g.name for g in cfg.groups}
    towns = {t.id: t.name for t in cfg.towns}
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = cells.writer(f)
        writer.writerow(["电话", "类别", "乡镇", "备注"])
        for c in contacts:
            national = c.phone.removeprefix("+86")
            writer.writerow([national, groups[c.group], towns[c.town], "合成数据 synthetic"])
    return path


def field_start(cfg) -> datetime:
    """The first moment inside a calling window on the campaign's first day."""
    rules = cfg.calling
    first = datetime.combine(cfg.campaign.start_date, dtime(0, 0), tzinfo=rules.tz)
    start = calling.next_allowed(rules, first)
    if start is None:
        raise MinpingError("the campaign has no calling window between its start and end dates")
    return start


def run_demo(
    *,
    directory: str | Path,
    database_url: str | None = None,
    frame_size: int = 60_000,
    size: int | None = None,
    seed: int = 20261126,
    ivr_days: float = 6.0,
    cati_days: float = 3.0,
    interviewers: int = 12,
    mode_experiment: float = 0.0,
    config_path: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """Run the whole job and return its summary (what ``--json`` prints)."""
    from cati.simulate import run_cati_phase, simulated_interviewers
    from ivr.fieldwork import run_ivr_field_period
    from ivr.handoff import handover_counts
    from minping.commands.sample import format_balance
    from minping.draws import balance_report, draw_sample, release_all
    from minping.export import write_export
    from minping.frames import import_frame
    from minping.inputs import import_samples
    from minping.score_effects import effects_lines
    from minping.scores import respondent_table, score_and_report

    say = echo or (lambda _msg: None)
    started, started_cpu = time.perf_counter(), time.process_time()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        path = directory / "minping.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{path.resolve()}"
    cfg = load_config(config_path)
    if mode_experiment:  # the embedded mode experiment (minping.experiment): CATI-first share
        cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(
            cfg.experiment, mode_cati_first_fraction=mode_experiment))
    size = size or cfg.campaign.sample_size
    summary: dict = {"database": database_url, "seed": seed, "phases": {}}
    phases = summary["phases"]

    def phase(n: int, title: str) -> tuple[float, float]:
        say(f"[{n}/8] {title}")
        return time.perf_counter(), time.process_time()

    def done(name: str, t0: tuple[float, float], **data) -> None:
        # wall seconds, and the CPU seconds of this process (the figure that a loaded
        # machine changes least)
        phases[name] = {**data, "seconds": round(time.perf_counter() - t0[0], 2),
                        "cpu_seconds": round(time.process_time() - t0[1], 2)}

    db = Database(database_url)
    try:
        t0 = phase(1, f"database ({db.dialect}) and campaign configuration")
        db.upgrade()
        with db.transaction() as session:
            if session.scalar(select(func.count()).select_from(Frame)):
                raise MinpingError(
                    f"the database {database_url!r} already holds a frame; the demo needs an "
                    "empty database (give a new --dir, or an empty --database-url)"
                )
            sync_campaign(session, cfg)
        say(f"      {cfg.campaign.id}: {len(cfg.tracks)} tracks, {len(cfg.units)} units, "
            f"{len(cfg.groups)} groups, {len(cfg.towns)} towns")
        done("campaign", t0, units=len(cfg.units))

        t0 = phase(2, f"synthetic sampling frame: {frame_size:,} contacts, imported from CSV")
        contacts = synthetic_frame(cfg, frame_size, rng=np.random.default_rng(seed))
        frame_csv = write_frame_csv(cfg, contacts, directory / "frame-synthetic.csv")
        with db.transaction() as session:
            imported = import_frame(session, cfg, frame_csv, frame_name=SYNTHETIC_FRAME,
                                    imported_by="demo")
            session.execute(update(Frame).where(Frame.id == imported.frame_id)
                            .values(synthetic=True))
        say(f"      {imported.imported:,} contacts imported from {frame_csv.name} "
            "(SYNTHETIC numbers; no call leaves this machine)")
        done("frame", t0, contacts=imported.imported, file=str(frame_csv))

        t0 = phase(3, f"stratified draw of {size:,} respondents and unit assignment")
        with db.transaction() as session:
            drawn = draw_sample(session, cfg, size=size, seed=seed, strata="group",
                                method="proportional", replicates=2, reserve=20,
                                frame=SYNTHETIC_FRAME)
            release_all(session, cfg, now=field_start(cfg))
        say(f"      {drawn.cases:,} cases in {len(drawn.strata)} strata "
            f"(+{drawn.reserve_cases} reserve), released")
        with db.session() as session:
            for line in format_balance(balance_report(session, cfg), max_units=3):
                say(f"      {line}")
        say(f"      {drawn.k} units per respondent; raters per unit "
            f"{drawn.unit_min}-{drawn.unit_max}; seed {drawn.seed}; frame hash {drawn.frame_hash[:12]}…")
        done("draw", t0, **{k: v for k, v in drawn.as_dict().items()
                            if k in ("draw_id", "size", "seed", "frame_hash", "cases",
                                     "reserve_cases", "raters_per_unit")})

        start = field_start(cfg)
        t0 = phase(4, f"IVR field period: {ivr_days:g} days from {start:%Y-%m-%d %H:%M} "
                      "against the local Twilio simulator (virtual clock)")
        with db.transaction() as session:  # their phones take the IVR's hand-overs
            simulated_interviewers(session, interviewers)
        ivr = run_ivr_field_period(db, cfg, start=start, days=ivr_days, seed=seed,
                                   progress=_every(10.0, lambda line: say(f"      {line}")))
        say(f"      {ivr.get('calls', 0):,} calls, {ivr.get('answers', 0):,} answers, "
            f"{ivr.get('interviews', 0):,} interviews")
        done("ivr", t0, **{k: ivr[k] for k in ("calls", "answers", "interviews",
                                               "handed_to_cati", "do_not_call") if k in ivr})

        cati_start = calling.next_allowed(cfg.calling, start + timedelta(days=ivr_days)) or start
        t0 = phase(5, f"CATI phase: {interviewers} simulated interviewers work the cases "
                      f"IVR did not finish ({cati_days:g} days)")
        cati = run_cati_phase(db, cfg, start=cati_start, interviewers=interviewers, seed=seed,
                              days=cati_days)
        say(f"      {cati['attempts']:,} attempts, {cati['cati_completes']:,} completes; "
            f"{cati['cases_still_in_field']:,} cases still in the field")
        with db.session() as session:
            handovers = handover_counts(session)
        say("      " + format_handovers(handovers))
        done("cati", t0, handovers=handovers, **{k: cati[k] for k in (
            "attempts", "cati_completes", "codes", "cases_still_in_field")})

        t0 = phase(6, "in-person assessment ballots, online votes and inspection records "
                      "(bundled synthetic files)")
        inputs = import_samples(db, cfg)
        for r in inputs:
            say(f"      {r.kind}: {Path(r.file).name} ({r.rows:,} rows)")
        done("inputs", t0, files=len(inputs))

        t0 = phase(7, "balance, scores, flags, ranks and the HTML report")
        with db.session() as session:
            balance = balance_report(session, cfg)
        for line in format_balance(balance, max_units=5):
            say(f"      {line}")
        report = score_and_report(db, cfg, directory / "report")
        summary["effects"] = effects_lines(report.get("effects"))  # mode, interviewer effects
        for line in summary["effects"]:
            say(f"      {line}")
        done("scoring", t0, report=report["report"])

        t0 = phase(8, "respondent-level exports (CSV, SPSS, Stata; no phone numbers)")
        table = respondent_table(db, cfg)
        exports = [str(write_export(table, directory / "export" / f"respondents.{fmt}", fmt))
                   for fmt in ("csv", "sav", "dta")]
        done("exports", t0, files=exports)
        summary.update(final_summary(db, cfg, balance, report))
    finally:
        db.dispose()

    summary["report"] = report["report"]
    summary["exports"] = exports
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["cpu_seconds"] = round(time.process_time() - started_cpu, 1)
    say("")
    for line in format_final(summary):
        say(line)
    return summary


def format_handovers(h: dict) -> str:
    """One line on the hand-overs (转人工) of the IVR phase and their CATI pickup."""
    return (f"hand-overs (转人工): {h['asked']} asked; {h['put_through']} put through to an "
            f"interviewer's phone, {h['not_answered']} rung unanswered; call-back offered when "
            f"nobody took it: {h['callback_booked']} booked, {h['callback_declined']} declined; "
            f"{h['taken_in_cati']} handed-over cases taken by an interviewer in the CATI phase")


def final_summary(db: Database, cfg, balance: dict, report: dict) -> dict:
    """Completes by stratum, AAPOR rates, and the per-track table with flags."""
    from minping.fieldstats import case_outcomes, rates_by

    with db.session() as session:
        outcomes = case_outcomes(session)
    rates = rates_by(outcomes, lambda _o: "all").get("all", {})
    return {
        "units": len(cfg.units),
        "strata": [
            {k: r[k] for k in ("stratum", "frame_size", "target", "drawn", "completed", "gap")}
            for r in balance["strata"]
        ],
        "completed": balance["totals"]["completed"],
        "respondents": report.get("respondents"),
        "rates": rates,
        "balance": {"failing_units": balance["failing_units"], "kish": balance["kish"]},
        "tracks": report["tracks"],
    }


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def format_final(summary: dict) -> list[str]:
    lines = ["== summary", "completes by stratum (AAPOR 1.1) against the target:"]
    for r in summary["strata"]:
        lines.append(f"  {r['stratum']:<12} N {r['frame_size']:>7,}  target {r['target']:>5,}  "
                     f"drawn {r['drawn']:>5,}  completed {r['completed']:>5,}")
    rates = summary["rates"]
    if rates:
        lines.append(
            f"response: RR1 {_pct(rates.get('RR1'))}  RR3 {_pct(rates.get('RR3'))}  "
            f"COOP1 {_pct(rates.get('COOP1'))}  REF1 {_pct(rates.get('REF1'))}  "
            f"CON1 {_pct(rates.get('CON1'))}  (e = {_num(rates.get('e'), '.3f')}, "
            f"{rates.get('e_basis', '')})"
        )
    handovers = summary["phases"].get("cati", {}).get("handovers")
    if handovers:
        lines.append(format_handovers(handovers))
    lines.append(f"respondents scored (1.1 and 1.2): {summary.get('respondents')}")
    for track in summary["tracks"]:
        rows = track["rows"]
        lines.append("")
        lines.append(f"{track['name']} ({track['track']}): {len(rows)} units; "
                     f"below 70: {track['below']}, possibly below 70: "
                     f"{track['possibly_below']}")
        lines.append(f"  {'unit':<14}{'composite':>10}  {'95% CI':<15}{'rank':>10}  flag")
        ordered = sorted(rows, key=lambda r: (r["composite"] is None, -(r["composite"] or 0)))
        for r in ordered:
            ci = ("—" if r["ci_low"] is None
                  else f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]")
            rank = "—" if r.get("rank") is None else (
                f"{r['rank']} ({r['rank_low']}-{r['rank_high']})")
            flag = r.get("flag") or ""
            if not r.get("reliable", True):
                flag = (flag + " unreliable").strip()
            lines.append(f"  {r['unit']:<14}{_num(r['composite']):>10}  {ci:<15}{rank:>10}  {flag}")
    lines.append("")
    lines.append(f"report: {summary['report']}")
    lines.append("exports: " + ", ".join(summary["exports"]))
    lines.append(f"database: {summary['database']}")
    lines.append(f"finished in {summary['seconds']} s ({summary['cpu_seconds']} s of CPU); "
                 "per phase: " + ", ".join(f"{name} {p['seconds']:g} s"
                                           for name, p in summary["phases"].items()))
    return lines
