// Assessment (考核) for supervisors: indicators per unit, street chief, grid or camera by day, week, month, quarter
// or year, drawn as bars, with the spreadsheet and the reviewed detections (training data) to download.

import { api, apiAnswer, operates } from "./api.js";
import { fill, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const BARS = [["on_time_closure_rate", "%"], ["closure_rate", "%"], ["rework_rate", "%"], ["mean_response_minutes", "min"]];

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

/** One indicator over the periods, a line per group (unit, chief, grid or camera): is each getting better? */
function trend(rows, key, unit) {
  const periods = [...new Set(rows.map((row) => row.period))].sort();
  const groups = [...new Set(rows.map((row) => row.group))].slice(0, COLOURS.length);
  const values = rows.map((row) => row[key]).filter((value) => value !== null && value !== undefined);
  const top = unit === "%" ? 1 : Math.max(...values, 1e-9);
  const [width, height, left, bottom] = [560, 200, 48, 28];
  const x = (index) => left + 24 + (periods.length > 1 ? (index * (width - left - 64)) / (periods.length - 1) : 0);
  const y = (value) => 8 + (1 - value / top) * (height - bottom - 8);
  const label = (value) => (unit === "%" ? `${Math.round(100 * value)} %` : `${Math.round(value)} ${unit}`);
  const chart = svg("svg", { class: "trend", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": key },
    svg("line", { x1: left, y1: y(0), x2: width, y2: y(0), class: "axis" }),
    svg("text", { x: left - 6, y: y(top) + 4, "text-anchor": "end" }, label(top)),
    svg("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end" }, label(0)),
    ...periods.map((period, index) => svg("text", { x: x(index), y: height - 8, "text-anchor": "middle" }, period)));
  groups.forEach((group, index) => {
    const points = periods.map((period, at) => [at, rows.find((row) => row.group === group && row.period === period)?.[key]])
      .filter(([, value]) => value !== null && value !== undefined);
    const colour = COLOURS[index];
    chart.append(svg("polyline", { points: points.map(([at, value]) => `${x(at)},${y(value)}`).join(" "),
                                   stroke: colour, fill: "none", "stroke-width": 2 }),
      ...points.map(([at, value]) => svg("circle", { cx: x(at), cy: y(value), r: 3.5, fill: colour },
        svg("title", {}, `${group} · ${periods[at]}: ${label(value)}`))));
  });
  const legend = h("div", { class: "legend" }, groups.map((group, index) =>
    h("span", {}, h("i", { style: `background: ${COLOURS[index]}` }), group)));
  return h("section", { class: "detail" }, h("h2", {}, `${t(`assess.${key}`)} · ${t("assess.trend")}`), chart, legend);
}

function download(blob, name) {
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);  // the browser has the file by then
}

/** The periods shown unless a range is asked for, enough for a trend: two weeks of days, twelve weeks, six months,
 * four quarters, three years; up to the city's today, which the server knows (the browser's clock and time zone
 * may not be the city's). */
const PERIODS = { day: 14, week: 12, month: 6, quarter: 4, year: 3 };

/** The day `days` after a day written yyyy-mm-dd, written so: calendar days, whatever the browser's time zone
 * (what is not a day is left as it is, for the server to refuse). */
function addDays(day, days) {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return day;
  date.setUTCDate(date.getUTCDate() + days);
  return date.toISOString().slice(0, 10);
}

export class AssessmentPage {
  constructor(root, query) { this.root = root; this.query = query; }

  async mount() {
    const by = this.query.get("by") || "unit", period = this.query.get("period") || "month";
    let from = this.query.get("from") || "", to = this.query.get("to") || "";  // `to`: the last day, shown so
    const params = new URLSearchParams({ by, period });
    if (from) params.set("from", from);
    if (to) params.set("to", addDays(to, 1));  // the API's `to` is the day after the last
    if (!from && !to) params.set("periods", PERIODS[period] ?? 1);
    const form = h("form", { class: "toolbar", onchange: (event) => {
      const asked = new URLSearchParams(new FormData(form));
      if (event.target.name === "period") { asked.delete("from"); asked.delete("to"); }  // that period's own range
      location.hash = `#/assessment?${asked}`;
    } }, h("select", { name: "by", "aria-label": "by" }, ["unit", "street_chief", "grid", "camera"]
      .map((value) => h("option", { value, selected: value === by }, t(`assess.${value}`)))),
    h("select", { name: "period", "aria-label": "period" }, ["day", "week", "month", "quarter", "year"]
      .map((value) => h("option", { value, selected: value === period }, t(`assess.${value}`)))),
    h("input", { type: "date", name: "from", value: from, "aria-label": "from" }),
    h("input", { type: "date", name: "to", value: to, "aria-label": "to", title: t("assess.to") }),
    h("button", { type: "button", class: "plain", id: "csv", onclick: async () => {
      try {
        download(await api(`/api/v1/assessment?${params}&format=csv`), `gridwatch-${by}-${period}.csv`);
      } catch (error) { toast(error.message); }
    } }, t("assess.csv")),
    operates() && h("button", { type: "button", class: "plain", id: "training-data",  // the operators' (server)
                                onclick: () => this.exportTraining() }, t("assess.training")));
    let rows;
    try {
      const answer = await apiAnswer(`/api/v1/assessment?${params}`);
      rows = answer.data;
      // the range the server took (whole periods, in the city's days): shown, the last day as the last day
      const used = [answer.headers.get("X-Assessment-From"), answer.headers.get("X-Assessment-To")];
      if (used[0] && used[1]) [from, to] = [used[0], addDays(used[1], -1)];
      form.elements.from.value = from;
      form.elements.to.value = to;
    } catch (error) {  // a range the server refuses (`to` before `from`, too long): said here, the form kept to fix it
      if (error.status !== 422 && error.status !== 400) throw error;
      fill(this.root, h("h1", {}, t("assess.title")), form,
        h("p", { class: "error", role: "alert", id: "assessment-error" }, error.message));
      return;
    }
    const periods = new Set(rows.map((row) => row.period)).size;
    const trends = periods > 1 ? BARS.map(([key, unit]) => trend(rows, key, unit)) : [];
    const charts = BARS.map(([key, unit]) => {
      const values = rows.map((row) => row[key] ?? 0);
      const top = Math.max(...values, unit === "%" ? 1 : 1e-9);
      return h("section", { class: "detail" }, h("h2", {}, t(`assess.${key}`)), h("div", { class: "bars" },
        rows.flatMap((row) => [h("span", {}, `${row.group} · ${row.period}`),
          h("div", { class: "bar", style: `width: ${(100 * (row[key] ?? 0)) / top}%` }),
          h("span", {}, row[key] === null ? "—" : unit === "%" ? `${(100 * row[key]).toFixed(1)} %` : `${row[key]} ${unit}`)])));
    });
    const columns = ["group", "period", "rank", "cases", "closed", "due", "on_time", "returned", "closure_rate",
      "on_time_closure_rate", "rework_rate", "extension_rate", "false_positive_rate"];
    const table = h("table", { id: "assessment" }, h("thead", {}, h("tr", {}, columns
      .map((name) => h("th", {}, t(`assess.col.${name}`))))), h("tbody", {}, rows.map((row) => h("tr", {}, columns
      .map((name) => h("td", {}, row[name] ?? "—"))))));
    fill(this.root, h("h1", {}, t("assess.title")), form,
      rows.length ? h("div", {}, h("div", { class: "two", id: "trends" }, trends), table,
                      h("div", { class: "two" }, charts))
        : h("div", { class: "empty" }, t("assess.none")));
  }

  async exportTraining() {
    try {
      download(await api("/api/v1/training-data?classes=garbage&category=litter"), "gridwatch-feedback.zip");
    } catch (error) { toast(error.message); }
  }

  changed() {}
  unmount() {}
}
