"""The report's section on mode and interviewer effects (方式效应与访员效应).

Turns ``ScoringResults.effects`` (gathered by ``minping.score_effects``, the
estimators in ``scoring.modes`` and ``scoring.interviewers``) into the rows
and sentences ``report.html.j2`` shows: per track and overall the
experimental IVR − CATI difference beside the observational one, the
experiment's arms, the interviewer effects, and the mode-adjusted unit scores
beside the unadjusted ones.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EFFECTS_TEXT", "effects_context"]

EFFECTS_TEXT = {
    "zh": {
        "title": "方式效应与访员效应", "track": "评价类别", "overall": "全部单位",
        "experimental": "实验估计 IVR − CATI", "observational": "观察估计 IVR − CATI",
        "ci": "95% 置信区间", "n": "人数 IVR/CATI", "arm": "实验组", "released": "释放样本",
        "respondents": "受访者", "share": "应答比例", "answered_cati": "经访员作答",
        "ivr_first": "先 IVR", "cati_first": "先 CATI", "interviewers": "访员数",
        "ratings": "评价数", "outlying": "偏离同行的访员", "unit": "单位", "score": "得分（未调整）",
        "cati_share": "CATI 比例", "adjusted": "方式调整后得分", "ci_bound": "保守区间",
        "none": "无",
        "mode_note": "方式效应：受访者在本类单位上的平均评分之差（IVR − CATI），按分层设计加权估计（与 R survey 的 "
                     "svyby + svycontrast 相同），t 区间。实验估计比较嵌入式方式实验中随机分配的两组（先 CATI 与先 IVR，"
                     "按分配组比较其受访者），只反映作答方式本身的影响；观察估计按实际作答方式比较全部受访者，"
                     "混杂了谁经访员作答与如何作答。",
        "no_experiment": "本次调查未进行嵌入式方式实验，故只有观察估计，不给出方式调整后的得分。",
        "adjusted_note": "方式调整后得分只用实验估计：每个经访员（CATI）作答的评价按本类的实验差值 δ 移到按键（IVR）水平，"
                         "单位得分因此移动 s·δ（s 为该单位加权后经访员作答的比例）。其标准误以 SE(得分) + s·SE(δ) "
                         "为上界（二者来自同一批受访者，协方差未估计），区间据此为保守区间。未调整得分始终并列给出，"
                         "预警与排名仍用未调整得分。",
        "inter_note": "访员效应：CATI 评价先按单位中心化（比较可比案例），单因素方差分析估计访员内相关 ρ_int，"
                      "访员设计效应 1 + (m̄ − 1)ρ_int（m̄ 为每名访员的平均评价数）；某访员的平均偏差经 Holm "
                      "校正后 p < 0.05 即列为偏离同行。此为筛查指标，不考虑抽样设计。",
    },
    "en": {
        "title": "Mode and interviewer effects", "track": "Track", "overall": "all units",
        "experimental": "Experimental IVR − CATI", "observational": "Observational IVR − CATI",
        "ci": "95% interval", "n": "n IVR/CATI", "arm": "Arm", "released": "Released",
        "respondents": "Respondents", "share": "Respondent share",
        "answered_cati": "Answered an interviewer", "ivr_first": "IVR-first",
        "cati_first": "CATI-first", "interviewers": "Interviewers", "ratings": "Ratings",
        "outlying": "Outlying interviewers", "unit": "Unit", "score": "Score (unadjusted)",
        "cati_share": "CATI share", "adjusted": "Mode-adjusted score",
        "ci_bound": "Conservative interval", "none": "none",
        "mode_note": "Mode effect: the difference of the respondents' mean ratings of the track's units "
                     "(IVR − CATI), design-based (as R survey's svyby + svycontrast), t interval. The "
                     "experimental estimate compares the randomised arms of the embedded mode experiment "
                     "(CATI-first against IVR-first, respondents by the arm they were assigned): the effect "
                     "of the mode itself. The observational estimate compares all respondents by the mode "
                     "they answered in: it confounds who answers through an interviewer with how they answer.",
        "no_experiment": "No embedded mode experiment ran, so there is only the observational estimate "
                         "and no mode-adjusted score.",
        "adjusted_note": "The mode-adjusted score uses the experimental estimate only: every rating given "
                         "to an interviewer (CATI) is moved to the keypad (IVR) level by its track's "
                         "experimental difference δ, which moves the unit's score by s·δ (s = the unit's "
                         "weighted share of ratings given to an interviewer). Its SE is bounded by "
                         "SE(score) + s·SE(δ) (both come from the same respondents and their covariance is "
                         "not estimated), so its interval is conservative. The unadjusted score is always "
                         "shown beside it; flags and ranks use the unadjusted score.",
        "inter_note": "Interviewer effects: CATI ratings centred on their unit's mean (comparable cases), "
                      "ρ_int by one-way ANOVA, interviewer design effect 1 + (m̄ − 1)ρ_int (m̄ = ratings "
                      "per interviewer); an interviewer whose mean deviation has a Holm-adjusted p < 0.05 "
                      "is listed as outlying. A screening measure: it ignores the sampling design.",
    },
}


def _diff(d: dict | None) -> tuple[str, str, str]:
    from minping.report import _interval

    if not d:
        return "—", "—", "—"
    lo = d["ci_low"] if d["ci_low"] is not None else float("nan")
    hi = d["ci_high"] if d["ci_high"] is not None else float("nan")
    return f"{d['difference']:+.1f}", _interval(lo, hi), f"{d['n_a']}/{d['n_b']}"


def effects_context(effects: dict[str, Any] | None, names: dict[str, str], lang: str) -> dict | None:
    """What the template shows; ``names`` maps track and unit ids to their labels."""
    from minping.report import _interval, _num, _pct

    if not effects:
        return None
    T = EFFECTS_TEXT[lang]
    names = {"overall": T["overall"], **names}
    mode = []
    for key, m in effects.get("mode", {}).items():
        mode.append({"track": names.get(key, key), "exp": _diff(m.get("experimental")),
                     "obs": _diff(m.get("observational"))})
    arms = []
    for arm, a in (effects.get("experiment") or {}).items():
        arms.append({"arm": T[arm], "released": a["released"], "respondents": a["respondents"],
                     "share": _pct(a["respondent_share"]), "cati": a["answered_cati"]})
    inter = []
    for key, e in effects.get("interviewers", {}).items():
        if e and e.get("rho") is not None:
            inter.append({"track": names.get(key, key), "interviewers": e["interviewers"],
                          "ratings": e["n"], "rho": _num(e["rho"], 3), "deff": _num(e["deff"], 2),
                          "outlying": ", ".join(r["interviewer"] for r in e["rows"] if r["outlying"])
                          or T["none"]})
    nan = float("nan")
    adjusted = [{"unit": names.get(u, u), "track": names.get(a["track"], a["track"]),
                 "score": _num(a["score"]), "cati_share": _pct(a["cati_share"]),
                 "adjusted": _num(a["adjusted"]),
                 "ci": _interval(a["ci_low"] if a["ci_low"] is not None else nan,
                                 a["ci_high"] if a["ci_high"] is not None else nan)}
                for u, a in (effects.get("mode_adjusted") or {}).items()]
    paras = [T["mode_note"], T["adjusted_note"] if arms else T["no_experiment"]]
    return {"T": T, "mode": mode, "arms": arms, "interviewers": inter, "adjusted": adjusted,
            "paras": paras, "inter_note": T["inter_note"]}
