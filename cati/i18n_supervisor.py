"""Chinese for the supervisor and statistician pages (:mod:`cati.supervisor`, the dashboard),
merged into :data:`cati.i18n.ZH`."""

ZH_SUPERVISOR: dict[str, str] = {
    "All rates": "全部比率",
    "Appointment": "预约",
    "Assigned to": "指定访员",
    "Back to the dashboard": "回到监控面板",
    "Balance per unit": "各单位样本均衡",
    "Cancel": "取消",
    "Case lists": "样本列表",
    "Counts as": "计入比率为",
    "Dissimilarity": "相异指数",
    "Filter": "筛选",
    "Filter units": "筛选单位",
    "Furthest behind": "进度最慢的单位",
    "Holes (a group expected but with no rater): {units}":
        "空缺（应有评价人却无人评价的类别）：{units}",
    "Interim codes for cases still in the field. A case counts for the mode of its last "
    "attempt; a case never attempted counts for no mode.":
        "仍在调查中的样本按临时代码计算。样本计入其最后一次拨打的方式；从未拨打的样本不计入任何方式。",
    "Interim: from the completes so far; the published figures come from minping score / "
    "minping report.": "临时结果：按目前已完成的访问计算；发布的数字以 minping score / minping report 为准。",
    "Interval": "置信区间",
    "Kish design effect of the completes: {deff} (effective n {neff}).":
        "已完成样本的 Kish 设计效应：{deff}（有效样本量 {neff}）。",
    "Live scores (phone)": "实时得分（电话调查）",
    "Passed": "通过",
    "Per-unit phone score with its confidence interval ({n} units)":
        "各单位电话调查得分及置信区间（{n} 个单位）",
    "Raters": "评价人数",
    "Raters by group (expected)": "各类别评价人数（期望值）",
    "Raters by group against expected, per unit (failing units first)":
        "各单位各类别评价人数与期望值（未通过的单位在前）",
    "Release {n} cases": "投放 {n} 个样本",
    "Replicate {r} of draw {d} will be released: {n} cases.":
        "将投放第 {d} 次抽样的第 {r} 批样本：共 {n} 个。",
    "Replicate {r} was already released; nothing more was released.":
        "第 {r} 批样本已经投放过；这次没有投放任何样本。",
    "Satisfied %": "满意率 %",
    "Score": "得分",
    "Statistics": "统计",
    "Status": "状态",
    "Still held afterwards: replicates {rs}. The reserve stays held.":
        "投放后仍保留的批次：{rs}。备用样本继续保留。",
    "Tested on: {what}. {n} of {m} units fail the chi-square test (α = {a}) or the "
    "dissimilarity limit.": "检验依据：{what}。{m} 个单位中有 {n} 个未通过卡方检验（α = {a}）或相异指数限值。",
    "The reserve is not released as a replicate: it replaces ineligible numbers one by one "
    "(minping sample release --reserve-for-ineligible).":
        "备用样本不作为一批投放：它逐个替换不合格号码（minping sample release --reserve-for-ineligible）。",
    "Total": "合计",
    "Track": "序列",
    "Tracks": "各评议序列",
    "all": "全部",
    "next": "下一页",
    "page {p} of {n}": "第 {p} / {n} 页",
    "previous": "上一页",
    "All cases": "全部样本",
    "Today's appointments": "今日预约",
    "Refusal conversions": "拒访转化",
    "Hand-overs": "转人工",
    "Assigned to an interviewer": "已指定访员",
    "Being worked now": "正在处理",
    "{n} cases": "{n} 个样本",
    "Practice": "练习",
    "Practice cases are for training: they never count in any statistic, report or export, "
    "their numbers are not phone numbers, and the call is simulated. You can practise at any "
    "hour.": "练习样本用于培训：不计入任何统计、报告或导出，号码不是真实电话号码，通话为模拟通话。任何时间都可以练习。",
    "{n} practice cases open.": "还有 {n} 个练习样本。",
    "Take a practice case": "领取练习样本",
    "No practice case is left: ask a supervisor for more.":
        "没有练习样本了：请督导再生成一些（minping practice create）。",
    "answered": "已回答的评价",
    "assigned": "分配的评价",
}
