// English and Chinese; the choice is remembered in this browser.

const TEXTS = {
  en: {
    // the workflow's words: English as the API names them
    "status.collected": "collected", "status.registered": "registered", "status.dispatched": "dispatched",
    "status.handling": "handling", "status.feedback": "feedback", "status.verified": "verified",
    "status.closed": "closed", "status.returned": "returned", "status.deferred": "deferred", "status.void": "void",
    "action.collect": "collect", "action.file": "file", "action.dispatch": "dispatch", "action.reassign": "reassign",
    "action.accept": "accept", "action.return": "return", "action.extend": "extend", "action.defer": "defer",
    "action.resume": "resume", "action.feedback": "feedback", "action.rework": "rework", "action.verify": "verify",
    "action.close": "close", "action.void": "void", "action.reopen": "reopen", "action.escalate": "escalate",
    "action.join": "join", "void.false_positive": "false_positive", "void.duplicate": "duplicate",
    "void.not_our_responsibility": "not_our_responsibility", "void.other": "other", "assess.col.group": "group",
    "assess.col.period": "period", "assess.col.cases": "cases", "assess.col.closed": "closed",
    "assess.col.due": "due", "assess.col.on_time": "on_time", "assess.col.closure_rate": "closure_rate",
    "assess.col.on_time_closure_rate": "on_time_closure_rate", "assess.col.rework_rate": "rework_rate",
    "assess.col.extension_rate": "extension_rate", "assess.col.false_positive_rate": "false_positive_rate",
    "cases.field.grid": "grid", "cases.field.unit": "unit", "cases.field.node": "node",
    "cases.field.camera": "camera", "category.illegal_parking": "illegal_parking",
    "category.street_vending": "street_vending", "category.litter": "litter", "category.device_fault": "device_fault",
    "category.streetlight_fault": "streetlight_fault",
    "nav.review": "Review", "nav.cases": "Cases", "nav.board": "Street chiefs", logout: "Log out",
    "live.title": "Live updates", "login.title": "GridWatch console", "login.token": "API token",
    "login.hint": "Ask an administrator for a token (gridwatch server token NAME --role operator).",
    "login.submit": "Log in", "login.bad": "This token is not known.", "login.revoked": "The server no longer takes this token; log in again.",
    "review.title": "Detections waiting for a decision", "review.empty": "Nothing waits for a decision.",
    "review.confirm": "Confirm", "review.read_only": "Only operators confirm or reject detections; you see the queue.", "review.false_positive": "False positive", "review.duplicate": "Duplicate",
    "review.not_our_responsibility": "Not our responsibility", "review.keys": "Keys",
    "review.next": "next", "review.previous": "previous", "review.bulk_confirm": "Confirm selected",
    "review.bulk_reject": "Reject selected as false positive", "review.confirmed": "Case {id} confirmed and dispatched",
    "review.rejected": "Case {id} rejected", "review.arrived": "New detection: case {id}",
    "fact.camera": "Camera", "fact.zone": "Zone", "fact.dwell": "Dwell", "fact.score": "Score",
    "fact.category": "Category", "fact.opened": "Opened", "fact.unit": "Unit", "fact.chief": "Street chief",
    "fact.on_duty": "On duty", "fact.deadline": "Deadline", "fact.status": "Status", "fact.grid": "Grid",
    "fact.source": "Source", "fact.description": "Report",
    "cases.title": "Cases", "cases.all": "all", "cases.overdue": "overdue only", "cases.filter": "Filter",
    "cases.none": "No case matches.", "cases.page": "page {n} of {of}", "case.timeline": "Timeline", "case.evidence": "Evidence", "case.reports": "Citizen reports",
    "case.actions": "Actions", "case.reason": "Reason", "case.unit": "Unit", "case.minutes": "Minutes",
    "case.void_reason": "Why void", "case.left": "{t} left", "case.late": "{t} overdue", "case.met": "met", "case.missed": "missed", "case.none": "none",
    "board.title": "Street chiefs", "board.units": "Member units",
    "nav.city": "City", "nav.assessment": "Assessment",
    "city.title": "The city", "city.pick": "Pick a camera on the plan.", "city.empty": "No grid or camera yet.",
    "city.node": "Node", "city.open": "Open cases", "city.last": "Last event", "city.cases": "Its cases",
    "city.snapshot": "Take a snapshot", "city.no_snapshot": "No snapshot yet.", "city.asked": "Snapshot requested",
    "assess.title": "Assessment", "assess.unit": "by unit", "assess.street_chief": "by street chief",
    "assess.grid": "by grid", "assess.camera": "by camera", "assess.day": "day", "assess.week": "week",
    "assess.month": "month", "assess.quarter": "quarter", "assess.csv": "Download CSV",
    "assess.training": "Download training data", "assess.none": "No case in this period.",
    "assess.on_time_closure_rate": "On-time closure", "assess.closure_rate": "Closure",
    "assess.rework_rate": "Rework", "assess.trend": "trend", "assess.mean_response_minutes": "Mean response",
    "nav.zones": "Zones", "zones.title": "Zone editor", "zones.camera": "Pick a camera",
    "zones.no_snapshot": "No snapshot yet: asked the node for one.", "zones.no_snapshot_came": "The node sent no snapshot (is it online?); the zones can still be drawn.", "zones.never": "No zones sent from here yet.",
    "zones.waiting": "Sent as {v}; waiting for the node…", "zones.applied": "The node applied {v}.",
    "zones.refused": "The node refused {v}: {reason}", "zones.new": "New zone", "zones.rule": "Rule",
    "zones.dwell": "Dwell (s)", "zones.hours": "Hours", "zones.corners": "Corners",
    "zones.bad_hours": "Hours: write them as 07:00-19:00, or leave them empty for all day.",
    "zones.hint": "Click on the picture to draw a zone.", "zones.undo": "Undo corner", "zones.delete": "Delete zone",
    "zones.save": "Save and send",
  },
  zh: {
    "status.collected": "已采集", "status.registered": "已立案", "status.dispatched": "已派遣", "status.handling": "处置中",
    "status.feedback": "已反馈", "status.verified": "已核查", "status.closed": "已结案", "status.returned": "已回退",
    "status.deferred": "缓办", "status.void": "已作废", "action.collect": "采集", "action.file": "立案",
    "action.dispatch": "派遣", "action.reassign": "改派", "action.accept": "受理", "action.return": "回退",
    "action.extend": "延期", "action.defer": "缓办", "action.resume": "恢复", "action.feedback": "反馈",
    "action.rework": "返工", "action.verify": "核查", "action.close": "结案", "action.void": "作废", "action.reopen": "重开",
    "action.escalate": "升级", "action.join": "合并", "void.false_positive": "误报", "void.duplicate": "重复",
    "void.not_our_responsibility": "非本单位职责", "void.other": "其他", "assess.col.group": "分组", "assess.col.period": "周期",
    "assess.col.cases": "案件", "assess.col.closed": "结案", "assess.col.due": "应结", "assess.col.on_time": "按期",
    "assess.col.closure_rate": "结案率", "assess.col.on_time_closure_rate": "按期结案率", "assess.col.rework_rate": "返工率",
    "assess.col.extension_rate": "延期率", "assess.col.false_positive_rate": "误报率", "cases.field.grid": "网格",
    "cases.field.unit": "单位", "cases.field.node": "节点", "cases.field.camera": "摄像头",
    "category.illegal_parking": "违章停车", "category.street_vending": "占道经营", "category.litter": "暴露垃圾",
    "category.device_fault": "设备故障", "category.streetlight_fault": "路灯故障",
    "nav.review": "审核", "nav.cases": "案卷", "nav.board": "街长公示", logout: "退出",
    "live.title": "实时更新", "login.title": "GridWatch 指挥台", "login.token": "访问令牌",
    "login.hint": "请向管理员申请令牌（gridwatch server token 姓名 --role operator）。",
    "login.submit": "登录", "login.bad": "令牌无效。", "login.revoked": "服务器不再接受此令牌，请重新登录。",
    "review.title": "待审核的识别结果", "review.empty": "暂无待审核的识别结果。",
    "review.confirm": "确认立案", "review.read_only": "只有操作员可以确认或驳回检测；您可查看队列。", "review.false_positive": "误报", "review.duplicate": "重复",
    "review.not_our_responsibility": "非本部门职责", "review.keys": "快捷键",
    "review.next": "下一条", "review.previous": "上一条", "review.bulk_confirm": "批量确认",
    "review.bulk_reject": "批量标记为误报", "review.confirmed": "案卷 {id} 已立案并派遣",
    "review.rejected": "案卷 {id} 已作废", "review.arrived": "新的识别结果：案卷 {id}",
    "fact.camera": "摄像头", "fact.zone": "区域", "fact.dwell": "停留", "fact.score": "置信度",
    "fact.category": "类别", "fact.opened": "发现时间", "fact.unit": "责任单位", "fact.chief": "街长",
    "fact.on_duty": "值班人员", "fact.deadline": "处置时限", "fact.status": "状态", "fact.grid": "网格",
    "fact.source": "来源", "fact.description": "反映内容",
    "cases.title": "案卷", "cases.all": "全部", "cases.overdue": "仅超期", "cases.filter": "筛选",
    "cases.none": "没有符合条件的案卷。", "cases.page": "第 {n} 页，共 {of} 页", "case.timeline": "流程记录", "case.evidence": "证据", "case.reports": "群众反映",
    "case.actions": "操作", "case.reason": "原因", "case.unit": "单位", "case.minutes": "分钟",
    "case.void_reason": "作废原因", "case.left": "剩余 {t}", "case.late": "已超期 {t}", "case.met": "按期", "case.missed": "超期", "case.none": "无",
    "board.title": "街长公示", "board.units": "成员单位",
    "nav.city": "城市", "nav.assessment": "考核",
    "city.title": "城市全景", "city.pick": "在图上选择一个摄像头。", "city.empty": "暂无网格或摄像头。",
    "city.node": "节点", "city.open": "在办案卷", "city.last": "最近事件", "city.cases": "相关案卷",
    "city.snapshot": "抓拍", "city.no_snapshot": "暂无抓拍。", "city.asked": "已请求抓拍",
    "assess.title": "考核", "assess.unit": "按单位", "assess.street_chief": "按街长", "assess.grid": "按网格",
    "assess.camera": "按摄像头", "assess.day": "日", "assess.week": "周", "assess.month": "月",
    "assess.quarter": "季度", "assess.csv": "导出 CSV", "assess.training": "导出训练数据",
    "assess.none": "本期无案卷。", "assess.on_time_closure_rate": "按期结案率", "assess.closure_rate": "结案率",
    "assess.rework_rate": "返工率", "assess.trend": "趋势", "assess.mean_response_minutes": "平均响应时间",
    "nav.zones": "区域", "zones.title": "区域编辑", "zones.camera": "选择摄像头",
    "zones.no_snapshot": "暂无抓拍，已请求节点抓拍。", "zones.no_snapshot_came": "节点未发送抓拍（是否在线？），仍可绘制区域。", "zones.never": "尚未从此处下发区域。",
    "zones.waiting": "已下发 {v}，等待节点确认…", "zones.applied": "节点已应用 {v}。",
    "zones.refused": "节点拒绝了 {v}：{reason}", "zones.new": "新建区域", "zones.rule": "规则",
    "zones.dwell": "停留时间（秒）", "zones.hours": "时段", "zones.corners": "顶点",
    "zones.bad_hours": "时段：请写成 07:00-19:00，留空表示全天。",
    "zones.hint": "在画面上点击以绘制区域。", "zones.undo": "撤销顶点", "zones.delete": "删除区域",
    "zones.save": "保存并下发",
  },
};

const LANGUAGE_KEY = "gridwatch.language";
export let language = localStorage.getItem(LANGUAGE_KEY) || (navigator.language.startsWith("zh") ? "zh" : "en");

export function t(key, values = {}) {
  const text = TEXTS[language][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
}

export function setLanguage(value) {
  language = value;
  localStorage.setItem(LANGUAGE_KEY, value);
  document.documentElement.lang = value === "zh" ? "zh-CN" : "en";
}

export function translate(root = document) {
  root.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  root.querySelectorAll("[data-i18n-title]").forEach((node) => { node.title = t(node.dataset.i18nTitle); });
}
