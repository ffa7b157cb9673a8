// The dashboard page: every figure comes from the gateway's /api/dashboard/* with the
// reader's token; nothing is computed here but the charts' layout.
"use strict";

const API = "/api/dashboard";
const STATUS_NAMES = { registered: "已登记", filing_submitted: "备案审核中", filed: "已备案",
  suspended: "停业整顿", deregistered: "已注销" };
const GRADE_NAMES = { A: "A 级", B: "B 级", C: "C 级", D: "D 级", ungraded: "未评级" };
const SEVERITY_NAMES = { minor: "轻微", major: "较重", serious: "严重", critical: "重大" };
const FUND_NAMES = { central: "中央", provincial: "省级", municipal: "市级", district: "区级财政",
  upper_level: "上级补助" };

const state = { token: null, data: {}, charts: {}, definitions: [] };
window.__dashboard = state; // read by the browser test

function $(id) { return document.getElementById(id); }
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function yuan(fen) {
  return (Number(fen) / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2,
    maximumFractionDigits: 2 });
}
function shanghaiTime(iso) {
  return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
}

function status(text, error) {
  $("status").textContent = text || "";
  $("status").className = error ? "error" : "";
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) query.set(k, v);
  const url = API + path + (query.toString() ? "?" + query : "");
  const response = await fetch(url, { headers: { Authorization: "Bearer " + state.token } });
  if (response.status === 401) { logout("令牌无效或已过期，请重新登录。"); throw new Error("401"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json()
    : null;
  if (!response.ok) throw new Error((body && (body.detail || body.title)) || response.status);
  return body;
}

function params() {
  return { as_of: $("as-of").value, district: $("district").value };
}

// ---- the cards ---------------------------------------------------------------------------
function targetText(def, fig) {
  if (!def.target) return { text: "无目标", cls: "" };
  const t = def.target.value;
  const shown = def.unit === "percent" ? (t * 100).toFixed(2) + "%" : String(t);
  if (fig.value === null) return { text: "目标 " + shown, cls: "" };
  const met = fig.value >= t;
  return { text: (met ? "已达标 · 目标 " : "未达标 · 目标 ") + shown, cls: met ? "met" : "unmet" };
}

function renderCards(data) {
  const cards = $("cards");
  cards.replaceChildren();
  for (const def of data.definitions) {
    const fig = data.total.indicators[def.code];
    const card = el("div", null, "card");
    card.tabIndex = 0;
    card.dataset.indicator = def.code;
    card.title = def.definition;
    card.append(el("div", def.name, "name"));
    const value = el("div", fig.display, "value");
    value.dataset.value = fig.display;
    card.append(value);
    const target = targetText(def, fig);
    card.append(el("div", target.text, "target " + target.cls));
    card.append(el("div", fig.denominator === null ? "缺少基础数据"
      : `${fig.numerator} ÷ ${fig.denominator}`, "exact"));
    card.addEventListener("click", () => drill(def.code));
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") drill(def.code); });
    cards.append(card);
  }
}

function renderDistricts(data) {
  const select = $("district");
  const chosen = select.value;
  if (select.options.length <= 1 && !data.district) {
    for (const d of data.districts) {
      const option = el("option", d.district);
      option.value = d.district;
      select.append(option);
    }
  }
  if (data.district && ![...select.options].some((o) => o.value === data.district)) {
    const option = el("option", data.district);
    option.value = data.district;
    select.append(option);
  }
  select.value = data.district || chosen;
}

// ---- charts ------------------------------------------------------------------------------
function chart(id) {
  if (!state.charts[id]) state.charts[id] = echarts.init($(id));
  return state.charts[id];
}

function renderAreas(data) {
  const code = $("street-indicator").value || "filing_rate";
  const def = data.definitions.find((d) => d.code === code);
  const byStreet = !!data.district;
  $("by-label").textContent = byStreet ? "街道" : "区";
  const rows = byStreet ? (data.streets || []).filter((s) => s.indicators[code]) : data.districts;
  const names = rows.map((r) => (byStreet ? r.street : r.district));
  const values = rows.map((r) => {
    const v = r.indicators[code]?.value;
    return v === null || v === undefined ? null
      : Number((def.unit === "percent" ? v * 100 : v).toFixed(2));
  });
  const series = [{ type: "bar", name: def.name, data: values, label: { show: true,
    position: "top", formatter: (p) => (p.value === null ? "" : p.value + (def.unit === "percent" ? "%" : "")) } }];
  if (def.target) {
    const t = def.unit === "percent" ? def.target.value * 100 : def.target.value;
    series[0].markLine = { symbol: "none", data: [{ yAxis: t, name: "目标" }],
      label: { formatter: "目标 " + t } };
  }
  chart("chart-areas").setOption({
    tooltip: { trigger: "axis" }, grid: { left: 50, right: 20, bottom: 60 },
    xAxis: { type: "category", data: names, axisLabel: { rotate: names.length > 6 ? 30 : 0 } },
    yAxis: { type: "value", name: def.unit === "percent" ? "%" : "" }, series,
  }, true);
}

function renderTrend(series) {
  const shown = ["filing_rate", "affordable_share", "utilisation", "certified_rate",
    "enrolment_rate", "health_management_rate"];
  const defs = series.definitions.filter((d) => shown.includes(d.code));
  chart("chart-trend").setOption({
    tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "—" : v + "%") },
    legend: { top: 0 }, grid: { left: 50, right: 20, top: 50, bottom: 30 },
    xAxis: { type: "category", data: series.months },
    yAxis: { type: "value", name: "%" },
    series: defs.map((d) => ({ type: "line", name: d.name, connectNulls: false,
      data: series.points.map((p) => {
        const v = p.total[d.code].value;
        return v === null ? null : Number((v * 100).toFixed(2));
      }) })),
  }, true);
}

function renderSubsidy(s) {
  const labels = s.budgets.map((b) => `${b.year} ${FUND_NAMES[b.fund] || b.fund}`);
  chart("chart-subsidy").setOption({
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 80, right: 20, top: 40 },
    xAxis: { type: "category", data: labels }, yAxis: { type: "value", name: "元" },
    series: [
      { type: "bar", name: "预算", data: s.budgets.map((b) => b.allocated_fen / 100) },
      { type: "bar", name: "已预留", data: s.budgets.map((b) => b.reserved_fen / 100) },
      { type: "bar", name: "已拨付", data: s.budgets.map((b) => b.paid_fen / 100) },
    ],
  }, true);
  const body = $("subsidy-table").tBodies[0];
  body.replaceChildren();
  for (const b of s.budgets) {
    const tr = el("tr");
    tr.append(el("td", b.year), el("td", FUND_NAMES[b.fund] || b.fund),
      el("td", yuan(b.allocated_fen), "num"), el("td", yuan(b.reserved_fen), "num"),
      el("td", yuan(b.paid_fen), "num"), el("td", b.paid_share.display, "num"));
    body.append(tr);
  }
}

function renderInspection(s) {
  const areas = [...new Set(s.findings.map((f) => f.title))];
  const severities = Object.keys(SEVERITY_NAMES);
  chart("chart-findings").setOption({
    title: areas.length ? undefined : { text: "暂无检查发现的问题", left: "center", top: "middle",
      textStyle: { fontSize: 14, color: "#5f6b7a", fontWeight: "normal" } },
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 140, right: 20, top: 40 },
    yAxis: { type: "category", data: areas }, xAxis: { type: "value", name: "问题数" },
    series: severities.map((sev) => ({ type: "bar", stack: "all", name: SEVERITY_NAMES[sev] || sev,
      data: areas.map((a) => s.findings.filter((f) => f.title === a && f.severity === sev)
        .reduce((n, f) => n + f.findings, 0)) })),
  }, true);
  $("visits-progress").textContent = `${s.visits.done} / ${s.visits.target}（${s.visits.progress.display}）`;
  $("rectification-rate").textContent = s.rectification.on_time_rate.display;
  $("overdue-count").textContent = String(s.rectification.overdue);
}

function renderCredit(c) {
  chart("chart-grades").setOption({
    tooltip: { trigger: "item" }, legend: { top: 0 },
    series: [{ type: "pie", radius: ["35%", "65%"], top: 30,
      data: c.grades.map((g) => ({ name: GRADE_NAMES[g.grade] || g.grade, value: g.institutions })) }],
  }, true);
  $("listed-trust").textContent = String(c.listed.trust_reward || 0);
  $("listed-dishonesty").textContent = String(c.listed.serious_dishonesty || 0);
  $("barred").textContent = String(c.barred_practitioners);
}

// ---- tables ------------------------------------------------------------------------------
function renderStreets(data) {
  const byStreet = Array.isArray(data.streets);
  $("streets-title").textContent = byStreet ? "各街道明细" : "各区明细";
  const rows = byStreet ? data.streets : data.districts.map((d) => ({ ...d, street: "（全区）",
    in_reference: true }));
  const defs = data.definitions.filter((d) => byStreet ? d.code !== "affordable_street_coverage"
    : true);
  const head = $("streets-table").tHead;
  head.replaceChildren();
  const hr = el("tr");
  hr.append(el("th", "区"), el("th", "街道"));
  for (const d of defs) hr.append(el("th", d.name, "num"));
  head.append(hr);
  const body = $("streets-table").tBodies[0];
  body.replaceChildren();
  for (const s of rows) {
    const tr = el("tr");
    tr.append(el("td", s.district), el("td", s.street + (s.in_reference ? "" : "（无基础数据）")));
    for (const d of defs) {
      const td = el("td", s.indicators[d.code].display, "num");
      td.dataset.indicator = d.code;
      tr.append(td);
    }
    body.append(tr);
  }
}

function renderDefinitions(data) {
  const dl = $("definitions");
  dl.replaceChildren();
  for (const d of data.definitions) {
    dl.append(el("dt", d.name));
    dl.append(el("dd", d.definition + (d.target ? `（目标：${d.target.source}）` : "")));
  }
  const r = data.reference;
  $("reference").textContent = r
    ? `人口基础数据：${r.year} 年（第 ${r.version_id} 版，${r.rows} 行，${shanghaiTime(r.loaded_at)} 由 ${r.loaded_by} 导入，SHA-256 ${r.sha256.slice(0, 12)}…）`
    : "尚未导入人口基础数据：每千人口托位数、入托率、街道覆盖率和社区平均托位数无法计算。";
}

function renderLag(lag) {
  const body = $("lag-table").tBodies[0];
  body.replaceChildren();
  const names = { registration: "登记备案", credit: "信用", inspection: "监督检查", subsidy: "补贴" };
  for (const v of lag.views) {
    const tr = el("tr");
    tr.dataset.upstream = v.upstream;
    tr.append(el("td", names[v.upstream] || v.upstream), el("td", v.position, "num"),
      el("td", v.head ?? "无应答", "num"), el("td", v.lag_events ?? "—", "num"),
      el("td", v.lag_seconds === null ? "—" : v.lag_seconds.toFixed(1), "num"));
    body.append(tr);
  }
}

async function drill(code) {
  const data = await api(`/indicators/${code}/institutions`, params());
  state.data.drill = data;
  $("drill").hidden = false;
  $("drill-title").textContent = `${data.name}：${data.count} 家机构`;
  $("drill-definition").textContent = data.definition;
  const body = $("drill-table").tBodies[0];
  body.replaceChildren();
  for (const i of data.institutions) {
    const tr = el("tr");
    tr.append(el("td", i.name), el("td", i.district), el("td", i.street),
      el("td", STATUS_NAMES[i.status] || i.status), el("td", i.numerator ?? "", "num"),
      el("td", i.denominator ?? "", "num"),
      el("td", `${i.event.type} #${i.event.notification_id}`), el("td", shanghaiTime(i.state_since)));
    tr.title = "点击查看该机构的全部状态和事件";
    tr.className = "clickable";
    tr.addEventListener("click", () => showHistory(i.institution_id, i.name));
    body.append(tr);
  }
  $("history").hidden = true;
  $("drill").scrollIntoView({ behavior: "smooth" });
}

// every state of one institution the dashboard counts, each with the event that made it
async function showHistory(institutionId, name) {
  const data = await api(`/institutions/${institutionId}/history`);
  state.data.history = data;
  $("history").hidden = false;
  $("history-title").textContent = `${name}：${data.count} 个状态`;
  const body = $("history-table").tBodies[0];
  body.replaceChildren();
  for (const h of data.states) {
    const tr = el("tr");
    tr.append(el("td", shanghaiTime(h.valid_from)), el("td", h.event_type),
      el("td", h.notification_id, "num"), el("td", STATUS_NAMES[h.status] || h.status),
      el("td", h.places, "num"), el("td", h.affordable ? "是" : "否"),
      el("td", h.report_month || ""), el("td", h.enrolled, "num"),
      el("td", `${h.certified_staff} / ${h.staff}`, "num"));
    body.append(tr);
  }
  $("history").scrollIntoView({ behavior: "smooth" });
}

// ---- loading -----------------------------------------------------------------------------
async function load() {
  status("加载中…");
  const p = params();
  try {
    const [indicators, series, subsidy, inspection, credit, lag] = await Promise.all([
      api("/indicators", p), api("/indicators/series", p), api("/subsidy", p),
      api("/inspection", p), api("/credit", p), api("/lag")]);
    Object.assign(state.data, { indicators, series, subsidy, inspection, credit, lag });
    renderDistricts(indicators);
    $("as-of-label").textContent = indicators.now ? `（当前，${indicators.as_of}）`
      : `（截至 ${indicators.as_of}）`;
    $("scope").textContent = indicators.district ? `范围：${indicators.district}` : "范围：全市";
    const select = $("street-indicator");
    if (!select.options.length) {
      for (const d of indicators.definitions) {
        const option = el("option", d.name);
        option.value = d.code;
        select.append(option);
      }
    }
    renderCards(indicators);
    renderAreas(indicators);
    renderTrend(series);
    renderSubsidy(subsidy);
    renderInspection(inspection);
    renderCredit(credit);
    renderStreets(indicators);
    renderDefinitions(indicators);
    renderLag(lag);
    status("");
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e.message !== "401") status("无法加载：" + e.message, true);
  }
}

async function download(format) {
  const quarter = $("quarter").value.trim();
  if (!/^\d{4}-?Q[1-4]$/i.test(quarter)) { status("请填写季度，例如 2026Q3", true); return; }
  const query = new URLSearchParams({ quarter: quarter.toUpperCase() });
  if ($("district").value) query.set("district", $("district").value);
  const response = await fetch(`${API}/reports/quarterly.${format}?${query}`,
    { headers: { Authorization: "Bearer " + state.token } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    status("无法生成报告：" + (body.detail || response.status), true);
    return;
  }
  const blob = await response.blob();
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = `托育季度进度报告-${quarter}.${format}`;
  a.click();
  URL.revokeObjectURL(a.href);
}

function logout(message) {
  sessionStorage.removeItem("tuoyu-token");
  state.token = null;
  $("board").hidden = true;
  $("login").hidden = false;
  if (message) status(message, true);
}

function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("tuoyu-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem("tuoyu-token");
  const now = new Date();
  $("as-of").max = now.toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
  $("quarter").value = `${now.getFullYear()}Q${Math.floor(now.getMonth() / 3) + 1}`;
  const asOf = new URLSearchParams(location.search).get("as_of");
  if (asOf) $("as-of").value = asOf;
  $("login-button").addEventListener("click", () => {
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem("tuoyu-token", token);
    state.token = token;
    $("login").hidden = true;
    $("board").hidden = false;
    load();
  });
  $("refresh").addEventListener("click", load);
  $("today").addEventListener("click", () => { $("as-of").value = ""; load(); });
  $("district").addEventListener("change", load);
  $("as-of").addEventListener("change", load);
  $("street-indicator").addEventListener("change", () => renderAreas(state.data.indicators));
  $("report-xlsx").addEventListener("click", () => download("xlsx"));
  $("report-pdf").addEventListener("click", () => download("pdf"));
  $("logout").addEventListener("click", () => logout());
  window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));
  if (!state.token) { logout(); return; }
  $("board").hidden = false;
  load();
}

start();
