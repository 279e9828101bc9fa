"""Checks and builds every section but ``[calling]``: campaign, towns, tracks, scale, groups,
deductions, flags, IVR and prompts."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from typing import Any

from minping.config.checks import (
    _Check,
    _join,
    _names,
    _show,
)
from minping.config.model import (
    _LANG,
    _PROMPT_FIELDS,
    _PROMPT_REQUIRED,
    CORRECTIONS,
    PROMPT_KEYS,
    WEIGHT_COMPONENTS,
    Campaign,
    Category,
    DeductionKind,
    Experiment,
    Flags,
    Group,
    IvrSettings,
    Prompts,
    Scale,
    ScaleOption,
    Town,
    Track,
    Unit,
    _frozen,
)


def _campaign(
    check: _Check, data: dict, languages: list[str] | None, facts: dict[str, Any]
) -> Campaign | None:
    t = check.table(data, "campaign", "")
    if t is None:
        return None
    mark = check.mark()
    p = "campaign"
    check.unknown(
        t,
        p,
        (
            "id",
            "name",
            "name_en",
            "polling_center",
            "polling_center_en",
            "start_date",
            "end_date",
            "default_language",
            "sample_size",
            "units_per_respondent",
            "min_raters",
        ),
    )
    cid = check.slug(t, "id", p)
    name, name_en = _names(check, t, p)
    center = check.text(t, "polling_center", p)
    center_en = check.text(t, "polling_center_en", p)
    start = check.day(t, "start_date", p)
    end = check.day(t, "end_date", p)
    if start is not None and end is not None and end < start:
        check.add(f"{p}.end_date", f"{end.isoformat()} is before start_date {start.isoformat()}")
    elif start is not None and end is not None:
        facts["start_date"], facts["end_date"] = start, end
    lang = check.text(t, "default_language", p)
    if lang is not None and languages is not None and lang not in languages:
        check.add(f"{p}.default_language", f"{_show(lang)} has no [prompts.{lang}] table")
    sample_size = check.integer(t, "sample_size", p, lo=1)
    k = check.integer(t, "units_per_respondent", p, lo=1)
    min_raters = check.integer(t, "min_raters", p, lo=2)
    if k is not None:
        facts["units_per_respondent"] = k
    if not check.clean_since(mark):
        return None
    return Campaign(
        id=cid,
        name=name,
        name_en=name_en,
        polling_center=center,
        polling_center_en=center_en,
        start_date=start,
        end_date=end,
        default_language=lang,
        sample_size=sample_size,
        units_per_respondent=k,
        min_raters=min_raters,
    )


def _towns(check: _Check, data: dict) -> tuple[Town, ...] | None:
    items = check.tables(data, "towns", "")
    if items is None:
        return None
    mark = check.mark()
    seen: dict[str, str] = {}
    towns = []
    for p, t in items:
        check.unknown(t, p, ("id", "name", "name_en"))
        tid = check.slug(t, "id", p)
        check.unique(seen, tid, f"{p}.id", "id")
        name, name_en = _names(check, t, p)
        towns.append(Town(tid, name, name_en))
    return tuple(towns) if check.clean_since(mark) else None


def _tracks(
    check: _Check, data: dict
) -> tuple[tuple[Track, ...] | None, dict[str, tuple[str, int]]]:
    """The tracks, and for every track id written (even in a faulty track) its path and size."""
    items = check.tables(data, "tracks", "")
    info: dict[str, tuple[str, int]] = {}
    if items is None:
        return None, info
    mark = check.mark()
    track_seen: dict[str, str] = {}
    unit_seen: dict[str, str] = {}
    tracks = []
    for p, t in items:
        check.unknown(t, p, ("id", "name", "name_en", "weights", "categories", "units"))
        tid = check.slug(t, "id", p)
        check.unique(track_seen, tid, f"{p}.id", "id")
        name, name_en = _names(check, t, p)
        weights = _weights(check, t, p)

        categories = []
        cat_seen: dict[str, str] = {}
        cat_items = check.tables(t, "categories", p, required=False)
        for cp, c in cat_items or ():
            check.unknown(c, cp, ("id", "name", "name_en"))
            cid = check.slug(c, "id", cp)
            check.unique(cat_seen, cid, f"{cp}.id", "category id")
            cname, cname_en = _names(check, c, cp)
            categories.append(Category(cid, cname, cname_en))
        has_categories = cat_items is not None

        units = []
        name_seen: dict[str, str] = {}
        used_categories: set[str] = set()
        for up, u in check.tables(t, "units", p) or ():
            check.unknown(u, up, ("id", "name", "name_en", "category"))
            uid = check.slug(u, "id", up)
            check.unique(unit_seen, uid, f"{up}.id", "id")
            uname, uname_en = _names(check, u, up)
            check.unique(name_seen, uname, f"{up}.name", "name")
            category = None
            if has_categories:
                category = check.text(u, "category", up)
                if category is not None and category not in cat_seen:
                    known = ", ".join(cat_seen) or "none"
                    check.add(
                        f"{up}.category",
                        f"unknown category {_show(category)} (categories: {known})",
                    )
                elif category is not None:
                    used_categories.add(category)
            elif "category" in u:
                check.add(f"{up}.category", f"track {_show(tid)} has no categories")
            units.append(Unit(uid, uname, uname_en, tid, category))
        for cid, cp in cat_seen.items():
            if cid not in used_categories:
                check.add(cp.rsplit(".", 1)[0], f"no unit is in category {_show(cid)}")
        tracks.append(Track(tid, name, name_en, weights, tuple(categories), tuple(units)))
        if tid is not None and tid not in info:
            info[tid] = (p, len(units))
    return (tuple(tracks) if check.clean_since(mark) else None), info


def _weights(check: _Check, track: dict, path: str) -> Mapping[str, float] | None:
    t = check.table(track, "weights", path)
    if t is None:
        return None
    p = f"{path}.weights"
    mark = check.mark()
    check.unknown(t, p, WEIGHT_COMPONENTS)
    if "phone" not in t:
        check.add(f"{p}.phone", "missing required key")
    weights = {}
    for key in WEIGHT_COMPONENTS:
        if key in t:
            weights[key] = check.number(t, key, p, lo=0, hi=1)
    if not check.clean_since(mark):
        return None
    total = sum(weights.values())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        check.add(p, f"weights must sum to 1, got {round(total, 9):g}")
        return None
    return _frozen(weights)


def _scale(
    check: _Check, data: dict, languages: list[str] | None
) -> tuple[Scale | None, dict[str, dict]]:
    """The scale, and the labels of every option whose key is valid."""
    labels_by_key: dict[str, dict] = {}
    t = check.table(data, "scale", "")
    if t is None:
        return None, labels_by_key
    mark = check.mark()
    check.unknown(t, "scale", ("options",))
    items = check.tables(t, "options", "scale")
    if items is None:
        return None, labels_by_key
    seen: dict[str, str] = {}
    options = []
    for p, o in items:
        check.unknown(o, p, ("key", "label", "points", "satisfied"))
        key = check.text(o, "key", p)
        if key is not None and not (len(key) == 1 and key.isdigit() and key.isascii()):
            check.add(f"{p}.key", f'must be one keypad digit "0" to "9", got {_show(key)}')
            key = None
        check.unique(seen, key, f"{p}.key", "key")
        labels = check.table(o, "label", p)
        if labels is not None:
            for lang, text in labels.items():
                lp = _join(f"{p}.label", lang)
                if languages is not None and lang not in languages:
                    check.add(lp, f"no [prompts.{lang}] table for this language")
                elif not isinstance(text, str) or not text.strip():
                    check.add(lp, f"must be a non-empty string, got {_show(text)}")
            for lang in languages or ():
                if lang not in labels:
                    check.add(_join(f"{p}.label", lang), "missing required key")
        points = check.number(o, "points", p, lo=0, hi=100, required=False)
        satisfied = check.boolean(o, "satisfied", p, required=False)
        if satisfied and "points" not in o:
            check.add(f"{p}.satisfied", "an option without points cannot count as satisfied")
        options.append(ScaleOption(key, _frozen(labels or {}), points, bool(satisfied)))
        if key is not None and key not in labels_by_key:
            labels_by_key[key] = {
                k: v for k, v in (labels or {}).items() if isinstance(v, str) and v.strip()
            }
    if sum(1 for _, o in items if "points" in o) < 2:
        check.add("scale.options", "at least two options must carry points")
    return (Scale(tuple(options)) if check.clean_since(mark) else None), labels_by_key


def _groups(
    check: _Check,
    data: dict,
    track_info: dict[str, tuple[str, int]],
    facts: dict[str, Any],
) -> tuple[Group, ...] | None:
    items = check.tables(data, "groups", "")
    if items is None:
        return None
    mark = check.mark()
    seen: dict[str, str] = {}
    groups = []
    rated: set[str] = set()
    all_refs_known = True
    for p, g in items:
        check.unknown(g, p, ("id", "name", "name_en", "tracks"))
        gid = check.slug(g, "id", p)
        check.unique(seen, gid, f"{p}.id", "id")
        name, name_en = _names(check, g, p)
        refs = check.array(g, "tracks", p)
        chosen: list[str] = []
        if refs is not None:
            if not refs:
                check.add(f"{p}.tracks", "must name at least one track")
            for i, ref in enumerate(refs):
                rp = f"{p}.tracks[{i}]"
                if not isinstance(ref, str):
                    check.add(rp, f"must be a track id, got {_show(ref)}")
                elif ref not in track_info:
                    all_refs_known = False
                    known = ", ".join(track_info) or "none"
                    check.add(rp, f"unknown track {_show(ref)} (tracks: {known})")
                elif ref in chosen:
                    check.add(rp, f"track {_show(ref)} is listed twice")
                else:
                    chosen.append(ref)
        else:
            all_refs_known = False
        rated.update(chosen)
        k = facts.get("units_per_respondent")
        if k is not None and chosen:
            n_units = sum(track_info[t][1] for t in chosen)
            if n_units < k:
                check.add(
                    f"{p}.tracks",
                    f"the group can rate {n_units} units, fewer than "
                    f"campaign.units_per_respondent = {k}",
                )
        groups.append(Group(gid, name, name_en, tuple(chosen)))
    if all_refs_known:
        for track_id, (track_path, _) in track_info.items():
            if track_id not in rated:
                check.add(track_path, f"no group rates track {_show(track_id)}")
    return tuple(groups) if check.clean_since(mark) else None


def _deductions(check: _Check, data: dict) -> tuple[DeductionKind, ...] | None:
    t = check.table(data, "deductions", "")
    if t is None:
        return None
    mark = check.mark()
    check.unknown(t, "deductions", ("kinds",))
    seen: dict[str, str] = {}
    kinds = []
    for p, k in check.tables(t, "kinds", "deductions") or ():
        check.unknown(k, p, ("id", "name", "name_en", "per", "min_points", "max_points"))
        kid = check.slug(k, "id", p)
        check.unique(seen, kid, f"{p}.id", "id")
        name, name_en = _names(check, k, p)
        per = check.text(k, "per", p)
        lo = check.number(k, "min_points", p, lo=0, hi=100, lo_open=True)
        hi = check.number(k, "max_points", p, lo=0, hi=100, lo_open=True)
        if lo is not None and hi is not None and hi < lo:
            check.add(f"{p}.max_points", f"{hi:g} is less than min_points {lo:g}")
        kinds.append(DeductionKind(kid, name, name_en, per, lo, hi))
    return tuple(kinds) if check.clean_since(mark) else None


def _flags(check: _Check, data: dict) -> Flags | None:
    t = check.table(data, "flags", "")
    if t is None:
        return None
    mark = check.mark()
    check.unknown(t, "flags", ("threshold", "correction", "confidence"))
    threshold = check.number(t, "threshold", "flags", lo=0, hi=100)
    correction = check.text(t, "correction", "flags")
    if correction is not None and correction not in CORRECTIONS:
        allowed = ", ".join(f'"{c}"' for c in CORRECTIONS)
        check.add("flags.correction", f"must be one of {allowed}, got {_show(correction)}")
    confidence = check.number(t, "confidence", "flags", lo=0, hi=1, lo_open=True, hi_open=True)
    return Flags(threshold, correction, confidence) if check.clean_since(mark) else None


def _experiment(check: _Check, data: dict) -> Experiment | None:
    """``[experiment]`` (optional): the embedded mode experiment (:mod:`minping.experiment`)."""
    t = check.table(data, "experiment", "", required=False)
    if t is None:
        return None if "experiment" in data else Experiment()
    mark = check.mark()
    check.unknown(t, "experiment", ("mode_cati_first_fraction", "seed"))
    fraction = check.number(t, "mode_cati_first_fraction", "experiment", lo=0, hi=1,
                            required=False)
    if fraction == 1:
        check.add("experiment.mode_cati_first_fraction",
                  "must be under 1 (1 would leave no IVR-first arm to compare with), got 1")
    seed = check.text(t, "seed", "experiment", required=False)
    if not check.clean_since(mark):
        return None
    return Experiment(0.0 if fraction is None else fraction, seed)


def _ivr(
    check: _Check, data: dict, languages: list[str] | None, scale_labels: dict[str, dict]
) -> IvrSettings | None:
    t = check.table(data, "ivr", "")
    if t is None:
        return None
    p = "ivr"
    mark = check.mark()
    check.unknown(
        t,
        p,
        (
            "voices",
            "gather_timeout_seconds",
            "max_reasks",
            "start_key",
            "repeat_key",
            "opt_out_key",
            "handoff_key",
            "record_comment",
            "comment_max_seconds",
            "sms_advance_notice",
            *_IVR_DELIVERY_KEYS,
            *_IVR_DELIVERY_TEXT,
        ),
    )
    delivery = {k: check.integer(t, k, p, lo=lo, hi=hi)
                for k, (lo, hi, _) in _IVR_DELIVERY_KEYS.items() if k in t}
    for k, (pattern, example) in _IVR_DELIVERY_TEXT.items():
        if k in t:
            value = t[k]
            if isinstance(value, str) and (value == "" or re.fullmatch(pattern, value)):
                delivery[k] = value
            else:
                check.add(f"{p}.{k}", f'must be "" or like "{example}", got {_show(value)}')
    voices = check.table(t, "voices", p)
    if voices is not None:
        for lang, voice in voices.items():
            vp = _join(f"{p}.voices", lang)
            if languages is not None and lang not in languages:
                check.add(vp, f"no [prompts.{lang}] table for this language")
            elif not isinstance(voice, str) or not voice.strip():
                check.add(vp, f'must be a voice name such as "Polly.Zhiyu", got {_show(voice)}')
        for lang in languages or ():
            if lang not in voices:
                check.add(_join(f"{p}.voices", lang), "missing required key")
    gather = check.integer(t, "gather_timeout_seconds", p, lo=1, hi=60)
    reasks = check.integer(t, "max_reasks", p, lo=0, hi=10)
    start = check.key_char(t, "start_key", p)
    repeat = check.key_char(t, "repeat_key", p)
    opt_out = check.key_char(t, "opt_out_key", p)
    handoff = check.key_char(t, "handoff_key", p, allow_empty=True)
    record = check.boolean(t, "record_comment", p)
    comment_seconds = check.integer(t, "comment_max_seconds", p, lo=1, hi=600)
    sms = check.boolean(t, "sms_advance_notice", p)

    # Keys pressed while a rating question is open must not mean two things.
    in_question = [("repeat_key", repeat), ("opt_out_key", opt_out), ("handoff_key", handoff)]
    for i, (name, key) in enumerate(in_question):
        if not key:
            continue
        if key in scale_labels:
            label = next(iter(scale_labels[key].values()), "")
            what = f'scale key "{key}" ({label})' if label else f'scale key "{key}"'
            check.add(f"{p}.{name}", f'"{key}" collides with {what}')
        for other_name, other in in_question[:i]:
            if key == other:
                check.add(f"{p}.{name}", f'"{key}" collides with {other_name}')
    if start:
        for other_name, other in in_question:
            if start == other:
                check.add(f"{p}.start_key", f'"{start}" collides with {other_name}')
    if not check.clean_since(mark):
        return None
    return IvrSettings(
        voices=_frozen(voices),
        gather_timeout_seconds=gather,
        max_reasks=reasks,
        start_key=start,
        repeat_key=repeat,
        opt_out_key=opt_out,
        handoff_key=handoff or None,
        record_comment=record,
        comment_max_seconds=comment_seconds,
        sms_advance_notice=sms,
        **{k: v for k, v in delivery.items() if v is not None},
    )


#: Optional ``[ivr]`` keys of the call delivery: name -> (lowest, highest, default).
_IVR_DELIVERY_KEYS = {"handoff_wait_seconds": (5, 600, 30), "inbound_code_digits": (0, 8, 0)}
#: Optional ``[ivr]`` text keys of the call delivery: name -> (pattern, example).
_IVR_DELIVERY_TEXT = {
    "destination_country_code": (r"\+[1-9][0-9]{0,2}", "+86"),
    "byoc_trunk_sid": (r"BY[0-9a-fA-F]{32}", "BY" + "0" * 32),
    "messaging_service_sid": (r"MG[0-9a-fA-F]{32}", "MG" + "0" * 32),
}


def _template_fields(check: _Check, text: str, path: str) -> set[str] | None:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        check.add(path, f"is not a valid template ({exc}); write {{{{ and }}}} for literal braces")
        return None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not base:
            check.add(path, "placeholders must be named, e.g. {unit}")
            return None
        names.add(base)
    return names


def _template_texts(check: _Check, table: dict, lp: str, fields: dict[str, frozenset[str]],
                    required: dict[str, frozenset[str]], *, also=None) -> dict[str, str]:
    """The text templates ``fields`` names in ``table``, each checked for its placeholders
    (only those ``fields`` allows, all those ``required`` asks; then ``also(key, text,
    path)``); bad ones reported, left out."""
    texts: dict[str, str] = {}
    for key in fields:
        text = check.text(table, key, lp)
        if text is None:
            continue
        kp = _join(lp, key)
        used = _template_fields(check, text, kp)
        if used is None:
            continue
        for name in sorted(used - fields[key]):
            allowed = ", ".join(f"{{{f}}}" for f in sorted(fields[key]))
            check.add(kp, f"unknown placeholder {{{name}}} (allowed: {allowed})")
        for name in sorted(required.get(key, frozenset()) - used):
            check.add(kp, f"must contain the placeholder {{{name}}}")
        if also is not None:
            also(key, text, kp)
        texts[key] = text
    return texts


def _prompts(
    check: _Check, data: dict, campaign: Campaign | None, scale_labels: dict[str, dict]
) -> Prompts | None:
    t = check.table(data, "prompts", "")
    if t is None:
        return None
    mark = check.mark()
    texts: dict[str, dict[str, str]] = {}
    audio: dict[str, dict[str, str]] = {}
    for lang, table in t.items():
        lp = _join("prompts", lang)
        if lang == "audio":
            continue
        if not _LANG.match(lang):
            check.add(lp, 'is not a language code such as "cmn-CN" or "en"')
            continue
        if not isinstance(table, dict):
            check.add(lp, f"must be a table, got {_show(table)}")
            continue
        check.unknown(table, lp, PROMPT_KEYS)

        def reads_the_scale(key: str, text: str, kp: str, lang: str = lang) -> None:
            if key != "question":
                return
            for option_key, labels in scale_labels.items():
                label = labels.get(lang)
                if label and label.casefold() not in text.casefold():
                    check.add(kp, f'does not read out scale option "{option_key}" ({label})')

        texts[lang] = _template_texts(check, table, lp, _PROMPT_FIELDS, _PROMPT_REQUIRED,
                                      also=reads_the_scale)
    if not texts:
        check.add("prompts", "needs at least one language table, e.g. [prompts.cmn-CN]")

    raw_audio = check.table(t, "audio", "prompts", required=False)
    for lang, table in (raw_audio or {}).items():
        ap = _join("prompts.audio", lang)
        if lang not in texts:
            check.add(ap, f"no [prompts.{lang}] table for this language")
            continue
        if not isinstance(table, dict):
            check.add(ap, f"must be a table, got {_show(table)}")
            continue
        check.unknown(table, ap, PROMPT_KEYS)
        audio[lang] = {}
        for key in PROMPT_KEYS:
            if key in table:
                value = check.text(table, key, ap)
                if value is not None:
                    audio[lang][key] = value
    if not check.clean_since(mark) or campaign is None:
        return None
    return Prompts(
        default_language=campaign.default_language,
        texts=_frozen({lang: _frozen(v) for lang, v in texts.items()}),
        audio=_frozen({lang: _frozen(v) for lang, v in audio.items()}),
    )
