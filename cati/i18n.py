"""The CATI screens' translation function and catalogue.

Every string the screens show goes through :func:`gettext` (``_`` in the
templates).  The source strings are English; the catalogue gives Chinese, the
default language.  A user's language is ``User.language`` (``"zh"`` or
``"en"``); before log-in the screens are in Chinese.  A string missing from the
catalogue is shown in English (the test suite checks that none is missing).
"""

from __future__ import annotations

from flask import g

from cati.i18n_supervisor import ZH_SUPERVISOR

#: Languages a user may pick, with their names in their own language.
LANGUAGES = {"zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh"

ZH: dict[str, str] = {
    "AAPOR calculator default (I+P+R+NC+O)/(I+P+R+NC+O+NE)":
        "AAPOR 计算器默认值 (I+P+R+NC+O)/(I+P+R+NC+O+NE)",
    "Actions": "操作",
    "All units rated: choose the disposition.": "全部单位已评价：请选择结果代码。",
    "Answer changed (kept in the audit log).": "答案已修改（已记入审计日志）。",
    "Answers": "答案",
    "Appointment (respondent's local time)": "预约（受访者当地时间）",
    "Appointments": "预约",
    "Attempts": "拨打次数",
    "Attempts per hour": "每小时拨打",
    "Attempts so far": "拨打记录",
    "Audit log": "审计日志",
    "Average interview (s)": "平均访问时长（秒）",
    "Back to the case": "回到该样本",
    "Call (rings your phone first)": "呼叫（先振铃您的电话）",
    "Call open": "通话中",
    "Calls in progress": "正在进行的通话",
    "Case": "样本",
    "Case handed over.": "样本已转交。",
    "Case id, respondent id or phone number": "样本编号、受访者编号或电话号码",
    "Case reassigned.": "样本已重新分配。",
    "Case {case} closed: {code}.": "样本 {case} 已结束本次拨打：{code}。",
    "Cases": "样本数",
    "Cases held": "占用中的样本",
    "Change": "修改",
    "Close the attempt": "结束本次拨打",
    "Code": "代码",
    "Completed": "成功访问",
    "Completes": "成功访问",
    "Consent given": "受访者同意",
    "Consent recorded": "已记录同意",
    "Dashboard": "督导面板",
    "Date": "日期",
    "Dial first (the call is not open).": "请先拨号（通话尚未开始）。",
    "Dial first.": "请先拨号。",
    "Twilio refused the call to your phone: {reason} (error {code}). "
    "Dial by hand, or ask the supervisor to check the caller ID.":
        "Twilio 拒绝拨打您的电话：{reason}（错误 {code}）。请手动拨号，或请督导检查主叫号码。",
    "Disposition": "结果代码",
    "Disposition history": "结果代码记录",
    "Dispositions": "结果代码分布",
    "Due (local time)": "预约时间（当地）",
    "Every replicate is already released.": "所有批次均已投放。",
    "Fieldwork": "调查进度",
    "Final": "最终",
    "Find a case": "查找样本",
    "Finished": "已结束",
    "Give the case back without calling": "不拨打，退回样本",
    "Group": "分组",
    "Hand to CATI": "转人工访问",
    "Hand to IVR": "转语音自动访问",
    "Hours": "小时",
    "How do you rate the work of {unit}?": "请您对{unit}的工作作风进行评价。",
    "I dialled": "我已拨号",
    "In progress": "进行中",
    "Interviewer": "访员",
    "Interviewer productivity": "访员工作效率",
    "Kind": "类型",
    "Language": "语言",
    "Local time": "当地时间",
    "Log in": "登录",
    "Log out": "退出",
    "Minping CATI": "民评 电话访问系统",
    "Mode": "方式",
    "My appointments": "我的预约",
    "My work": "我的工作",
    "Next case": "下一个样本",
    "No attempt yet.": "尚未拨打。",
    "No case found.": "未找到样本。",
    "No case is available now.": "目前没有可拨打的样本。",
    "None.": "无。",
    "Not saved": "未保存",
    "Note": "备注",
    "Outcome": "结果",
    "Outside the calling hours: no case can be called now.": "当前不在拨打时段，暂无样本可拨。",
    "Overall": "总体",
    "Password": "密码",
    "Phone": "电话",
    "Queue": "队列",
    "Rated": "已评价",
    "Rating": "评价",
    "Ratings": "评价",
    "Reason": "原因",
    "Reassign": "重新分配",
    "Reassign to": "分配给",
    "Refusal conversion": "拒访转化",
    "Release the next replicate": "投放下一批样本",
    "Released": "已投放",
    "Replicate {r} released: {n} cases.": "第 {r} 批已投放：{n} 个样本。",
    "Respondent id": "受访者编号",
    "Response rates (AAPOR)": "应答率（AAPOR）",
    "Save": "保存",
    "Saved": "已保存",
    "Script": "访问脚本",
    "Search": "查找",
    "Seconds": "秒",
    "Send to the refusal-conversion queue": "转入拒访转化队列",
    "Share of target": "完成比例",
    "State": "状态",
    "Strata": "各层进度",
    "Stratum": "层",
    "Target": "目标",
    "There is no draw yet.": "尚未抽样。",
    "Time": "时间",
    "Too many attempts: wait {n} seconds and try again.": "尝试次数过多，请等待 {n} 秒后再试。",
    "Unit": "单位",
    "Units": "各单位进度",
    "User name": "用户名",
    "When (local time)": "时间（当地）",
    "Wrong user name or password.": "用户名或密码错误。",
    "You are not allowed to open this page.": "您无权访问此页面。",
    "You hold case {case}.": "您正在处理样本 {case}。",
    "anybody": "任何访员",
    "draw {d}: {n} cases held back": "第 {d} 次抽样：{n} 个样本未投放",
    "e = {e} ({basis}); RR3, RR4, REF2 and CON2 use it. Interim codes for cases still in the field.":
        "e = {e}（{basis}）；RR3、RR4、REF2、CON2 使用该值。尚在调查中的样本按当前暂定代码计。",
    "final": "最终",
    "given": "指定值",
    "hard": "硬预约（仅本人）",
    "keys 0-9 answer, Enter confirms, Backspace goes back": "数字键 0-9 作答，回车确认，退格返回上一题",
    "no": "否",
    "open": "进行中",
    "soft": "软预约（任何访员）",
    "updated": "更新于",
    "yes": "是",
    # --- the interviewer's shift (issue 17): script, dispositions, sessions, errors ---
    "Case {case} is already final ({code}).": "样本 {case} 已结案（{code}）。",
    "Case {case}: unit {unit} is not assigned to this case.": "样本 {case}：单位 {unit} 不属于本样本。",
    "Case {case} is held by {channel} now; try again later.": "样本 {case} 正由 {channel} 占用，请稍后再试。",
    "Dial first: {code} is the outcome of a call, and no call is open.":
        "请先拨号：{code} 是一次拨打的结果，目前没有进行中的通话。",
    "{code} needs the respondent's consent: press 'Consent given' first.":
        "{code} 需要受访者同意：请先点击“受访者同意”。",
    "{answered} of {total} units have an answer (\"don't know\" counts): the interview is {earned}, not {code}.":
        "{total} 个单位中已有 {answered} 个作答（“不了解”也算作答）：本次访问应为 {earned}，不是 {code}。",
    "Record the respondent's consent before the ratings.": "请先记录受访者同意，再录入评价。",
    "Case {case}: the respondent never consented, so it has no ratings to change.":
        "样本 {case}：受访者从未同意受访，没有可修改的评价。",
    "Case {case} is {final}; with this change {answered} of {total} units would have an answer, which is {earned}.":
        "样本 {case} 的结果为 {final}；修改后 {total} 个单位中只有 {answered} 个作答，应为 {earned}。",
    "There is no such case.": "没有这个样本。",
    "Case {case} is no longer yours (its hold ran out or it was given back): take the next case.":
        "样本 {case} 已不由您处理（占用已超时或已退回）：请取下一个样本。",
    "Case {case}: a call is open; close it with a disposition.":
        "样本 {case}：通话尚未结束，请选择结果代码结束本次拨打。",
    "Note: at most {n} characters, got {got}.": "备注最多 {n} 个字，现有 {got} 个。",
    "Choose a disposition from the list.": "请从列表中选择结果代码。",
    "Appointment: choose the date and the time of the call-back.": "预约：请选择回访的日期和时间。",
    "Appointment: choose soft or hard.": "预约：请选择软预约或硬预约。",
    "Appointment: {when} is already past.": "预约：{when} 已经过去。",
    "Appointment: {when} is outside the calling hours.": "预约：{when} 不在拨打时段内。",
    "Appointment: only with disposition {code}.": "预约只能与结果代码 {code} 一起使用。",
    "Only interviewers take cases.": "只有访员可以领取样本。",
    "Key {key} is not on the scale (keys: {keys}).": "按键 {key} 不在评价量表内（可用：{keys}）。",
    "Your session has ended: enter your password to go on.": "登录已过期：请输入密码继续。",
    "This page was out of date, so nothing was saved: please do it again.":
        "页面已过期，未保存任何内容：请重新操作。",
    "Introduction": "开场白",
    "Consent": "征求同意",
    "Closing": "结束语",
    "Appointment (respondent's local time, calling hours only)": "预约（受访者当地时间，仅限拨打时段）",
    "Your session has ended": "登录已过期",
    "Enter your password to go on; what you typed on this page is kept.":
        "请输入密码继续；本页已录入的内容会保留。",
    "Saving…": "正在保存…",
    "Question {n} of {total}": "第 {n}/{total} 题",
    ": ": "：",
    "The form could not be taken: {detail}": "无法接收该表单：{detail}",
    "There is no such page or case.": "没有这个页面或样本。",
    "Back": "返回",
    "No balance yet: {detail}": "暂无平衡性结果：{detail}",
    "No scores yet: {detail}": "暂无得分：{detail}",
    # roles, case states, appointment states
    "interviewer": "访员",
    "supervisor": "督导",
    "statistician": "统计人员",
    "pending": "待拨打",
    "in_field": "调查中",
    "handoff_cati": "转人工",
    "kept": "已履约",
    "missed": "未接通",
    "cancelled": "已取消",
    # the supervisors' interviewer effects (_interviewer_effects.html)
    "Interviewer effects": "访员效应",
    "CATI ratings centred on their unit's mean (comparable cases). ρ_int: share of the rating variance due to interviewers (one-way ANOVA). Design effect 1 + (m̄ − 1)ρ_int: how much the interviewers inflate the variance (m̄ ratings per interviewer). Outlying: an interviewer's mean deviation from peers beyond chance (Holm-adjusted p < 0.05).":
        "CATI 评价先按单位中心化（比较可比案例）。ρ_int：评价方差中由访员造成的比例（单因素方差分析）。"
        "设计效应 1 + (m̄ − 1)ρ_int：访员使方差放大的倍数（m̄ 为每名访员的评价数）。偏离同行：某访员的平均偏差超出"
        "随机波动（Holm 校正后 p < 0.05）。",
    "Track": "评价类别",
    "Interviewers": "访员数",
    "Design effect": "设计效应",
    "Outlying interviewers": "偏离同行的访员",
    "Too few CATI ratings (two interviewers needed).": "CATI 评价太少（至少需要两名访员）。",
    "Forecast": "进度预测",
    "Strata on track": "按期达标的层",
    "ρ_int and design effect per track": "各评价类别的 ρ_int 与设计效应",
    "calling days left": "个拨打日剩余",
    "as of": "截至",
    "end date": "结束日期",
    "Completes / target": "完成 / 目标",
    "Projected date": "预计达标日期",
    "Interval": "区间",
    "By the end date": "结束前达标",
    "To close the gap": "补足缺口",
    "reached": "已达标",
    "after": "结束之后",
    "short by": "缺",
    "release": "需释放样本",
    "next replicate": "下一批次",
    "or": "或",
    "IVR line-hours": "IVR 线路小时",
    "interviewer hours": "访员工时",
    "Units reaching min_raters by the end date": "结束前达到最低评价人数的单位",
}

ZH.update(ZH_SUPERVISOR)  # the supervisor and statistician pages' strings, in their own module

CATALOGUES: dict[str, dict[str, str]] = {"zh": ZH, "en": {}}


def current_language() -> str:
    user = g.get("user") if g else None
    lang = getattr(user, "language", None) or DEFAULT_LANGUAGE
    return lang if lang in CATALOGUES else DEFAULT_LANGUAGE


def gettext(text: str, **values: object) -> str:
    """``text`` in the current user's language, with ``{name}`` placeholders filled."""
    translated = CATALOGUES[current_language()].get(text, text)
    return translated.format(**values) if values else translated


def prompt_language(cfg, user_language: str) -> str:
    """The survey's prompt language for a screen language (``zh`` -> ``cmn-CN``)."""
    if user_language == "en" and "en" in cfg.languages:
        return "en"
    for lang in cfg.languages:
        if lang.split("-")[0] in ("cmn", "zh"):
            return lang
    return cfg.campaign.default_language
