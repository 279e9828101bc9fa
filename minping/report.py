"""The scoring report: one self-contained HTML file with inline SVG plots.

``write_report(results, out_dir, lang="zh")`` writes ``out_dir/index.html``:
the method (design, estimator, variance, intervals, flag rule with its
multiplicity correction), the sample and AAPOR outcome rates with ``e`` and
its basis, balance per stratum and per unit, one table and one dot plot per
track (every unit's composite with its interval and the threshold line),
and the flagged units.  Nothing is loaded from elsewhere: no scripts, style
sheets or fonts; plots are SVG whose labels stay ``<text>`` so Chinese
renders with any browser's fonts.  No respondent identifier or phone number
is written.

The input is a :class:`ScoringResults` (built from the database by
``minping.scores.run_scoring``), plain data only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from markupsafe import Markup

from minping.config.model import Unit, uses_chinese_names
from minping.report_effects import effects_context
from scoring.aapor import E_DEFAULT_FORMULA, OutcomeRates
from scoring.composite import CompositeScore, PartScore, TrackScores
from scoring.units import UnitScores

__all__ = [
    "ScoringResults",
    "StratumRow",
    "TrackResult",
    "UnitRaters",
    "dot_plot",
    "render_report",
    "write_report",
]

TEMPLATES = Path(__file__).with_name("report_templates")


@dataclass(frozen=True)
class StratumRow:
    """One stratum: N_h, the allocated target, cases drawn / released, respondents n_h."""

    code: str
    group: str
    town: str
    population: int
    target: int
    drawn: int
    released: int
    respondents: int
    reserve: int = 0  # drawn as the reserve (``drawn`` excludes them, as `sample balance`)
    completed: int = 0  # final disposition 1.1 (``respondents`` adds the partials 1.2)


@dataclass(frozen=True)
class UnitRaters:
    """A unit's raters by group: assigned (released cases) and in the domain (answered)."""

    unit: str
    assigned: Mapping[str, int]
    answered: Mapping[str, int]
    p_value: float
    dissimilarity: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class TrackResult:
    id: str
    name: str
    name_en: str
    weights: Mapping[str, float]
    units: tuple[Unit, ...]
    scores: TrackScores

    def label(self, lang: str) -> str:
        return self.name if uses_chinese_names(lang) else self.name_en


@dataclass(frozen=True)
class ScoringResults:
    """Everything the report shows (see ``minping.scores.run_scoring``)."""

    campaign: str
    campaign_en: str
    center: str
    center_en: str
    draw_id: int
    stratification: str
    options: Mapping[str, Any]
    threshold: float
    correction: str
    phone: UnitScores
    assessment: Mapping[str, PartScore]
    online: Mapping[str, PartScore]
    deductions: Mapping[str, float]
    tracks: tuple[TrackResult, ...]
    strata: tuple[StratumRow, ...]
    respondents: int
    rates: OutcomeRates | None
    open_cases: int
    unit_raters: tuple[UnitRaters, ...]
    groups: Mapping[str, tuple[str, str]]
    towns: Mapping[str, tuple[str, str]]
    generated_at: str
    effects: Mapping[str, Any] | None = None  # mode and interviewer effects (see minping.scores)
    #: AAPOR rates by stratum and by mode: {"stratum": {code: rates}, "mode": {mode: rates}}
    rates_by: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None

    def summary_rows(self) -> list[dict]:
        """Per track: the units' composites with flags and rank intervals (JSON-ready)."""
        out = []
        for t in self.tracks:
            names = {u.id: u.name for u in t.units}
            rows = []
            for c in t.scores:
                d = c.as_dict()
                rows.append({"unit": c.unit, "name": names[c.unit],
                             **{k: d[k] for k in ("composite", "ci_low", "ci_high", "flag",
                                                  "rank", "rank_low", "rank_high", "reliable",
                                                  "status", "deduction")}})
            out.append({"track": t.id, "name": t.name, "rows": rows,
                        "below": sum(c.flag == "below" for c in t.scores),
                        "possibly_below": sum(c.flag == "possibly-below" for c in t.scores)})
        return out

    def as_dict(self) -> dict:
        """Units' phone scores and every track's composites (JSON-ready)."""
        return {
            "draw": self.draw_id,
            "respondents": self.respondents,
            "options": dict(self.options),
            "threshold": self.threshold,
            "correction": self.correction,
            "units": [u.as_dict() for u in self.phone],
            "holes": [{"unit": u.unit, "stratum": h} for u in self.phone for h in u.uncovered],
            "tracks": [{"track": t.id, "weights": dict(t.weights),
                        "units": [c.as_dict() for c in t.scores]} for t in self.tracks],
            "rates": None if self.rates is None else self.rates.as_dict(),
            "effects": None if self.effects is None else dict(self.effects),
        }


# --- text ---------------------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "title": "测评结果报告", "method": "方法", "sample": "样本与应答率",
        "balance": "样本均衡", "tracks": "分类结果", "flags": "预警单位",
        "unit": "单位", "phone": "电话调查得分", "sat": "满意率", "assessment": "集中测评",
        "online": "网上评议", "onsite": "现场评议", "deduction": "扣分", "composite": "综合得分",
        "flag": "标记", "rank": "名次区间", "note": "说明", "raters": "评价人数",
        "below": "低于{t:g}分", "possibly-below": "可能低于{t:g}分",
        "unreliable": "评价人数不足{n}：数据不足，不预警、不排名", "no-score": "无综合得分",
        "missing": "缺少：", "uncovered": "并非每层都有分派评价人，缺：",
        "holes": "分派到单位的应答者为零的（单位, 层）：", "no_holes": "每个单位在每个可评价层都有分派的应答者。",
        "stratum": "层", "group": "群体", "town": "乡镇",
        "population": "总体数N_h", "target": "目标样本", "drawn": "抽取", "released": "释放",
        "respondents": "应答人数n_h", "respondents_total": "应答者（1.1 与 1.2）", "gap": "差额", "by_group": "各群体评价人数（应答/分派）",
        "p_value": "卡方p值", "dissimilarity": "相异指数", "passed": "通过", "yes": "是",
        "no": "否", "none_flagged": "本类无预警单位。", "open_cases": "尚在访问中的案例",
        "rate": "比率", "value": "数值", "count": "案例数", "generated": "生成时间",
        "center": "调查机构", "draw": "抽样批次", "plot_caption":
        "每个单位的综合得分（点）及其{level}置信区间（线）；竖线为{t:g}分线。",
        "ci": "{level}置信区间", "weights": "权重",
    },
    "en": {
        "title": "Scoring report", "method": "Method", "sample": "Sample and response rates",
        "balance": "Sample balance", "tracks": "Results by track", "flags": "Flagged units",
        "unit": "Unit", "phone": "Phone score", "sat": "Satisfied", "assessment": "Assessment",
        "online": "Online vote", "onsite": "On-site rating", "deduction": "Deducted",
        "composite": "Composite", "flag": "Flag", "rank": "Rank interval", "note": "Note",
        "raters": "Raters", "below": "below {t:g}", "possibly-below": "possibly below {t:g}",
        "unreliable": "fewer than {n} raters: insufficient data, not flagged or ranked", "no-score": "no composite",
        "missing": "missing: ", "uncovered": "not every stratum covered, none assigned in: ",
        "holes": "(unit, stratum) with no respondent assigned the unit: ",
        "no_holes": "Every unit has respondents assigned in every stratum that may rate it.",
        "stratum": "Stratum", "group": "Group", "town": "Town",
        "population": "Population N_h", "target": "Target", "drawn": "Drawn",
        "released": "Released", "respondents": "Respondents n_h",
        "respondents_total": "Respondents (1.1 and 1.2)", "gap": "Gap",
        "by_group": "Raters by group (answered / assigned)", "p_value": "Chi-square p",
        "dissimilarity": "Dissimilarity", "passed": "Passed", "yes": "yes", "no": "no",
        "none_flagged": "No unit of this track is flagged.",
        "open_cases": "Cases still in the field", "rate": "Rate", "value": "Value",
        "count": "Cases", "generated": "Generated", "center": "Polling center",
        "draw": "Draw", "plot_caption":
        "Each unit's composite (dot) with its {level} confidence interval (line); "
        "the vertical line is {t:g}.",
        "ci": "{level} CI", "weights": "Weights",
    },
}

CORRECTION = {
    "holm": ("Holm 逐步校正（控制族错误率）", "Holm's step-down correction (family-wise error rate)"),
    "bh": ("Benjamini–Hochberg 校正（控制错误发现率）",
           "Benjamini–Hochberg correction (false discovery rate)"),
    "none": ("不作多重比较校正", "no multiplicity correction"),
}
CI_METHOD = {
    "beta": ("Korn–Graubard（Clopper–Pearson 型）区间", "the Korn–Graubard (Clopper–Pearson type) interval"),
    "wilson": ("Wilson 区间（按设计效应调整的有效样本量）", "the Wilson interval on the effective sample size"),
    "logit": ("logit 变换区间", "the logit-transformed interval"),
}


def _method(results: ScoringResults, lang: str) -> list[str]:
    o = results.options
    level = f"{o['level'] * 100:g}%"
    zh = lang == "zh"
    strat = {"group": ("受访群体", "respondent group"),
             "group_town": ("受访群体×乡镇", "respondent group × town")}.get(
        results.stratification, (results.stratification, results.stratification))
    paras = []
    if zh:
        paras.append(
            f"抽样设计：按{strat[0]}分层的简单随机抽样（不放回）。应答者为最终处理代码为 1.1（完成）或 1.2（部分完成）"
            f"的案例。每位应答者只评价随机分派给其的若干单位，故第 h 层分派到单位 u 的 n_hu 名应答者是该层 n_h 名应答者的"
            f"简单随机子样本；单位 u 的权数为 N_h/n_hu（N_h 为该层总体数，n_hu 为该层分派到该单位的应答人数），"
            f"每个单位按其分派应答者构成的分层设计估计，方差估计使用有限总体校正 1 − n_hu/N_h。")
        if o.get("rake"):
            paras.append("权数按样本框的" + "、".join({"groups": "群体", "towns": "乡镇"}[m] for m in o["rake"])
                         + "分布（按各层总体数之和缩放）进行了迭代比例调整（raking），单位权数为 N_h/n_hu 乘以该应答者的调整系数，方差按校准残差计算。")
        paras.append(
            "单位得分：以评分标准将按键折算为分值（“不了解”及未回答不计入该单位的评价域），计算分层 Hájek 域均值，"
            "与 R survey 包对子域使用 svymean 的结果一致。")
        if o.get("variance") == "bootstrap":
            paras.append(f"方差：Rao–Wu–Yue 重标度自助法，重复 {o['replicates']} 次，随机种子 {o['seed']}。")
        else:
            paras.append("方差：线性化（泰勒展开）方差，含有限总体校正。")
        paras.append(
            f"区间：{level} 置信区间取 t 分布，自由度为该单位评价人数减去所涉层数；满意率（“满意”与“基本满意”之和）"
            f"采用{CI_METHOD[o['ci_method']][0]}。自由度为 0（仅一名评价人）时不给出区间；"
            f"评价人数少于 {o['min_raters']} 的单位标为“数据不足”，不预警、不排名。")
        paras.append("综合得分 = 各部分得分 × 本类权重之和 − 日常考查扣分；缺少某一部分的单位按其余部分的权重重新归一并注明。"
                     "只有抽样部分（电话调查、集中测评）带有抽样误差，网上评议与扣分视为无误差。")
        paras.append(flag_rule_text(results.threshold, results.correction, o["level"],
                                    o.get("ranks", "marginal"), lang="zh") + _flag_example(results, lang))
    else:
        paras.append(
            f"Design: stratified simple random sampling without replacement by {strat[1]}. "
            "Respondents are the cases with final disposition 1.1 (complete) or 1.2 (partial); "
            "each respondent rates only the units randomly assigned to them, so the n_hu respondents "
            "of stratum h assigned unit u are a simple random subsample of the stratum's n_h "
            "respondents, and unit u is estimated on its own stratified design with the weight "
            "N_h/n_hu (N_h the stratum's population, n_hu its respondents assigned u) and the "
            "finite population correction 1 − n_hu/N_h in the variance.")
        if o.get("rake"):
            paras.append("The weights are raked to the frame's distribution by "
                         + " and ".join(o["rake"]) + " (scaled to the total population Σ N_h); "
                         "a unit weight is N_h/n_hu times its respondent's raking factor, and "
                         "the variance uses the calibration residuals.")
        paras.append(
            "Unit score: keypad ratings become points by the scale (\"don't know\" and unanswered "
            "are outside the unit's domain); the score is the stratified Hájek domain mean, as "
            "R survey's svymean on a subset computes it.")
        if o.get("variance") == "bootstrap":
            paras.append(f"Variance: Rao–Wu–Yue rescaling bootstrap with {o['replicates']} "
                         f"replicates, seed {o['seed']}.")
        else:
            paras.append("Variance: linearised (Taylor) variance with the finite population correction.")
        paras.append(
            f"Intervals: {level} t intervals with the domain's degrees of freedom (raters minus "
            f"strata represented); the satisfaction rate (satisfied or basically satisfied) uses "
            f"{CI_METHOD[o['ci_method']][1]}. With 0 degrees of freedom (a single rater) there is "
            f"no interval. Units with fewer than {o['min_raters']} raters are marked "
            "\"insufficient data\": never flagged nor ranked.")
        paras.append("Composite = Σ track weight × part score − inspection deductions; a unit "
                     "missing a part gets the other parts with their weights rescaled, and the gap "
                     "is noted. Only sampled parts (phone survey, assessment ballots) carry sampling "
                     "error; online votes and deductions carry none.")
        paras.append(flag_rule_text(results.threshold, results.correction, o["level"],
                                    o.get("ranks", "marginal"), lang="en") + _flag_example(results, lang))
    return paras


RANKS = {
    "marginal": ("每个单位的名次区间以 {level} 的概率覆盖其真实名次（每个单位与其余 m − 1 个单位的比较作 Holm 校正）",
                 "each unit's rank interval covers its true rank with probability {level} (Holm's "
                 "correction over the unit's m − 1 comparisons)"),
    "simultaneous": ("本类所有单位的名次区间以 {level} 的概率同时覆盖各自的真实名次（全部 m(m − 1)/2 个两两比较作 Holm 校正）",
                     "the rank intervals of all units of a track cover their true ranks jointly "
                     "with probability {level} (Holm's correction over all m(m − 1)/2 pairs)"),
    "pairwise": ("两两比较各自在 {alpha} 水平下进行，未作多重比较校正，名次区间并非 {level} 区间",
                 "each pairwise comparison at level {alpha} without multiplicity correction; the "
                 "rank intervals are not {level} intervals"),
}


def _flag_example(results: ScoringResults, lang: str) -> str:
    """The rule applied to this report's own units: a "below" unit, and a "possibly below"
    one (whose interval lies under the threshold when there is such a unit)."""
    t = results.threshold
    below = possibly = None
    for track in results.tracks:
        for c in track.scores:
            if c.flag == "below" and below is None:
                below = (track, c)
            if c.flag == "possibly-below" and (possibly is None or (c.ci_high < t <= possibly[1].ci_high)):
                possibly = (track, c)
    parts = []
    for item in (below, possibly):
        if item is None:
            continue
        track, c = item
        m = sum(math.isfinite(x.p_adjusted) for x in track.scores)
        if lang == "zh":
            parts.append(f"{c.unit}（{track.label(lang)}）综合得分 {c.composite:.1f} [{c.ci_low:.1f}, {c.ci_high:.1f}]，"
                         f"单侧 p = {c.p_below:.2g}，在本类 {m} 个单位中校正后 p = {c.p_adjusted:.2g}，"
                         f"标为“{_flag_text(c.flag, t, lang)}”")
        else:
            parts.append(f"{c.unit} ({track.label(lang)}) scores {c.composite:.1f} [{c.ci_low:.1f}, "
                         f"{c.ci_high:.1f}], one-sided p = {c.p_below:.2g}, adjusted over the "
                         f"track's {m} tested units {c.p_adjusted:.2g}: \"{_flag_text(c.flag, t, lang)}\"")
    if not parts:
        return ""
    return ("本报告中的例子：" + "；".join(parts) + "。") if lang == "zh" else (
        " In this report: " + "; ".join(parts) + ".")


def flag_rule_text(threshold: float, correction: str, level: float, ranks: str,
                   lang: str = "en") -> str:
    """The flag rule and the rank-interval rule exactly as ``scoring.composite`` applies them."""
    alpha = 1.0 - level
    t = f"{threshold:g}"
    lv = f"{level * 100:g}%"
    half = f"{alpha / 2:g}"
    if lang == "zh":
        return (f"预警规则：对每个数据充足的单位作单侧 t 检验“综合得分低于 {t} 分”，得 p 值；同类单位的 p 值作"
                f"{CORRECTION[correction][0]}。校正后 p < {half}（即单侧 {half} 水平）标为“低于 {t} 分”；"
                f"否则，若其 {lv} 双侧置信区间（未校正）下限低于 {t} 分（区间含 {t} 分，或整个区间低于 {t} 分但"
                f"经多重比较校正后不显著），标为“可能低于 {t} 分”；其余不标记。没有区间或数据不足的单位不检验、不预警。"
                f"名次区间：两单位之差（协方差考虑共同评价人）作双侧 t 检验，"
                + RANKS[ranks][0].format(level=lv, alpha=f"{alpha:g}")
                + "；名次区间为 [1 + 显著高于该单位的单位数, 可排名单位数 − 显著低于该单位的单位数]。")
    return (f"Flag rule: every unit with sufficient data is tested one-sided for \"composite below {t}\" "
            f"(t test, p-value p); the p-values of a track's units get {CORRECTION[correction][1]}. "
            f"Adjusted p < {half} (a one-sided test at {half}): \"below {t}\". Otherwise, when the "
            f"lower end of its {lv} two-sided interval (unadjusted) is under {t} (the interval "
            f"contains {t}, or lies under {t} without surviving the correction): \"possibly below "
            f"{t}\". Otherwise no flag. A unit without interval or with insufficient data is not "
            f"tested nor flagged. Rank intervals: two units are told apart by a two-sided t test of "
            f"their difference (covariance from shared raters); "
            + RANKS[ranks][1].format(level=lv, alpha=f"{alpha:g}")
            + "; the rank interval is [1 + units told apart and above, ranked units − units told "
            "apart and below].")


def _num(x: float | None, digits: int = 1) -> str:
    if x is None or not isinstance(x, int | float) or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _interval(lo: float, hi: float, digits: int = 1) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _flag_text(flag: str | None, threshold: float, lang: str) -> str:
    return "" if flag is None else TEXT[lang][flag].format(t=threshold)


def _track_rows(results: ScoringResults, track: TrackResult, lang: str) -> list[dict]:
    T = TEXT[lang]
    rows = []
    order = sorted(track.scores, key=lambda c: (-c.composite if math.isfinite(c.composite) else math.inf, c.unit))
    names = {u.id: u.label(lang) for u in track.units}
    for c in order:
        ph = results.phone.units[results.phone.unit_ids.index(c.unit)] if c.unit in results.phone.unit_ids else None
        notes = []
        if (ph is not None and not ph.reliable) or (c.status != "no-score" and not c.reliable):
            notes.append(T["unreliable"].format(n=results.options["min_raters"]))
        if ph is not None and ph.uncovered:
            notes.append(T["uncovered"] + ("、" if lang == "zh" else ", ").join(ph.uncovered))
        if c.missing:
            notes.append(T["missing"] + "、".join(T.get(p, p) for p in c.missing)
                         if lang == "zh" else T["missing"] + ", ".join(T.get(p, p) for p in c.missing))
        if c.status == "no-score":
            notes.append(T["no-score"])
        a = results.assessment.get(c.unit)
        o = results.online.get(c.unit)
        rows.append({
            "unit": names[c.unit],
            "n": ph.n if ph else 0,
            "phone": _num(ph.score) if ph else "—",
            "phone_ci": _interval(ph.ci_low, ph.ci_high) if ph else "—",
            "sat": _pct(ph.sat) if ph else "—",
            "assessment": (f"{a.score:.1f} (n={a.n})" if a else "—") if "assessment" in track.weights else None,
            "online": (f"{o.score:.1f}" if o else "—") if "online" in track.weights else None,
            "deduction": _num(c.deduction, 2) if c.deduction else "0",
            "composite": _num(c.composite),
            "composite_ci": _interval(c.ci_low, c.ci_high),
            "flag": _flag_text(c.flag, results.threshold, lang),
            "flag_class": c.flag or "",
            "rank": "—" if c.rank is None else f"{c.rank} [{c.rank_low}, {c.rank_high}]",
            "note": "；".join(notes) if lang == "zh" else "; ".join(notes),
        })
    return rows


def dot_plot(track: TrackResult, *, threshold: float, lang: str = "zh",
             title: str | None = None) -> Markup:
    """An SVG dot plot of a track's composites with their intervals and the threshold line.

    Units are sorted by composite (highest first); units without a composite
    are listed at the bottom without a dot.  Every label is a ``<text>``.
    """
    names = {u.id: u.label(lang) for u in track.units}
    scored = sorted((c for c in track.scores if math.isfinite(c.composite)),
                    key=lambda c: (-c.composite, c.unit))
    unscored = [c for c in track.scores if not math.isfinite(c.composite)]
    rows: list[CompositeScore] = scored + unscored
    values = [v for c in scored for v in (c.composite, c.ci_low, c.ci_high) if math.isfinite(v)]
    lo = min([threshold - 10.0, *values]) if values else threshold - 10.0
    lo = max(0.0, math.floor(lo / 10.0) * 10.0)
    hi = max([100.0, *values]) if values else 100.0
    hi = math.ceil(hi / 10.0) * 10.0
    left, right, top, row_h = 300, 40, 40, 16
    plot_w = 460
    width = left + plot_w + right
    height = top + row_h * len(rows) + 30

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dotplot" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'font-family="sans-serif" font-size="12">']
    out.append(f"<title>{escape(title or track.label(lang))}</title>")
    bottom = top + row_h * len(rows)
    tick = lo
    while tick <= hi + 1e-9:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{bottom}" '
                   'stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle" '
                   f'fill="#555">{tick:g}</text>')
        tick += 10.0
    tx = x(threshold)
    out.append(f'<line class="threshold" x1="{tx:.1f}" y1="{top - 14}" x2="{tx:.1f}" '
               f'y2="{bottom}" stroke="#c00" stroke-width="1.5" stroke-dasharray="4 3"/>')
    out.append(f'<text class="threshold-label" x="{tx:.1f}" y="{top - 18}" text-anchor="middle" '
               f'fill="#c00">{threshold:g}</text>')
    colours = {"below": "#c00", "possibly-below": "#e08a00", None: "#1f5fa8"}
    for i, c in enumerate(rows):
        y = top + row_h * i + row_h / 2
        label = names.get(c.unit, c.unit)
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        if not math.isfinite(c.composite):
            out.append(f'<text x="{left + 4}" y="{y + 4:.1f}" fill="#888">'
                       f'{escape(TEXT[lang]["no-score"])}</text>')
            continue
        colour = colours.get(c.flag, "#1f5fa8")
        if math.isfinite(c.ci_low) and math.isfinite(c.ci_high):
            out.append(f'<line x1="{x(max(c.ci_low, lo)):.1f}" y1="{y:.1f}" '
                       f'x2="{x(min(c.ci_high, hi)):.1f}" y2="{y:.1f}" stroke="{colour}" '
                       'stroke-width="2"/>')
        fill = colour if c.reliable else "white"
        tip = f"{label}: {c.composite:.1f} {_interval(c.ci_low, c.ci_high)}"
        out.append(f'<circle cx="{x(c.composite):.1f}" cy="{y:.1f}" r="4" fill="{fill}" '
                   f'stroke="{colour}" stroke-width="1.5"><title>{escape(tip)}</title></circle>')
    out.append("</svg>")
    return Markup("\n".join(out))


def render_report(results: ScoringResults, *, lang: str = "zh") -> str:
    """The report as one HTML document (see the module notes)."""
    if lang not in TEXT:
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    T = TEXT[lang]
    level = f"{results.options['level'] * 100:g}%"
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # only to render

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    rates = None
    if results.rates is not None:
        r = results.rates
        rates = {
            "rates": [(k, _pct(v)) for k, v in r.rates().items()],
            "counts": list(r.counts.as_dict().items()),
            "e": _num(r.e, 4) if r.e is not None else "—",
            "basis": (("AAPOR 计算器默认：" if lang == "zh" else "AAPOR calculator default: ")
                      + E_DEFAULT_FORMULA) if r.e_basis == "default"
            else ("给定值" if lang == "zh" else "given"),
        }
    gi = 0 if lang == "zh" else 1
    group_name = {k: v[gi] for k, v in results.groups.items()}
    town_name = {k: v[gi] for k, v in results.towns.items()}
    strata = [{"code": s.code, "group": group_name.get(s.group, s.group),
               "town": town_name.get(s.town, s.town) if s.town else "—",
               "population": s.population, "target": s.target, "drawn": s.drawn,
               "released": s.released, "respondents": s.respondents,
               "reserve": s.reserve, "completed": s.completed,
               "gap": s.respondents - s.target} for s in results.strata]
    unit_names = {u.id: u.label(lang) for t in results.tracks for u in t.units}
    groups = list(results.groups)
    raters = [{"unit": unit_names.get(r.unit, r.unit),
               "cells": [f"{r.answered.get(g, 0)} / {r.assigned.get(g, 0)}" for g in groups],
               "p": _num(r.p_value, 3), "d": _num(r.dissimilarity, 3),
               "passed": T["yes"] if r.passed else T["no"]} for r in results.unit_raters]
    holes = [f"({unit_names.get(u.unit, u.unit)}, {h})" for u in results.phone
             for h in u.uncovered]
    tracks = []
    for t in results.tracks:
        flagged = [(unit_names.get(c.unit, c.unit), _flag_text(c.flag, results.threshold, lang),
                    _num(c.composite), _interval(c.ci_low, c.ci_high))
                   for c in sorted(t.scores, key=lambda c: c.composite) if c.flag]
        weights = ("、" if lang == "zh" else ", ").join(
            f"{T.get(p, p)} {w:g}" for p, w in t.weights.items() if w)
        tracks.append({"id": t.id, "name": t.label(lang), "weights": weights,
                       "has_assessment": "assessment" in t.weights,
                       "has_online": "online" in t.weights,
                       "rows": _track_rows(results, t, lang),
                       "plot": dot_plot(t, threshold=results.threshold, lang=lang),
                       "flagged": flagged})
    return env.get_template("report.html.j2").render(
        T=T, lang=lang, level=level, results=results,
        campaign=results.campaign if lang == "zh" else results.campaign_en,
        center=results.center if lang == "zh" else results.center_en,
        method=_method(results, lang), rates=rates, strata=strata,
        group_names=[group_name[g] for g in groups], raters=raters, tracks=tracks, holes=holes,
        caption=T["plot_caption"].format(level=level, t=results.threshold),
        effects=effects_context(results.effects, {**unit_names, **{t.id: t.label(lang) for t in
                                                                    results.tracks}}, lang),
    )


def write_report(results: ScoringResults, out_dir: str | Path, *, lang: str = "zh") -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render_report(results, lang=lang), encoding="utf-8")
    return path
