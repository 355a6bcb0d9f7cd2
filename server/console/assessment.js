// Assessment (考核) for supervisors: indicators per unit, street chief, grid or camera by day, week, month or
// quarter, drawn as bars, with the spreadsheet and the reviewed detections (training data) to download.

import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t } from "./i18n.js";

const BARS = [["on_time_closure_rate", "%"], ["closure_rate", "%"], ["rework_rate", "%"], ["mean_response_minutes", "min"]];

function download(blob, name) {
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

export class AssessmentPage {
  constructor(root, query) { this.root = root; this.query = query; }

  async mount() {
    const by = this.query.get("by") || "unit", period = this.query.get("period") || "month";
    const params = new URLSearchParams({ by, period });
    const rows = await api(`/api/v1/assessment?${params}`);
    const form = h("form", { class: "toolbar", onchange: () => {
      location.hash = `#/assessment?${new URLSearchParams(new FormData(form))}`;
    } }, h("select", { name: "by", "aria-label": "by" }, ["unit", "street_chief", "grid", "camera"]
      .map((value) => h("option", { value, selected: value === by }, t(`assess.${value}`)))),
    h("select", { name: "period", "aria-label": "period" }, ["day", "week", "month", "quarter"]
      .map((value) => h("option", { value, selected: value === period }, t(`assess.${value}`)))),
    h("button", { type: "button", class: "plain", id: "csv", onclick: async () => {
      download(await api(`/api/v1/assessment?${params}&format=csv`), `gridwatch-${by}-${period}.csv`);
    } }, t("assess.csv")),
    h("button", { type: "button", class: "plain", id: "training-data", onclick: () => this.exportTraining() },
      t("assess.training")));
    const charts = BARS.map(([key, unit]) => {
      const values = rows.map((row) => row[key] ?? 0);
      const top = Math.max(...values, unit === "%" ? 1 : 1e-9);
      return h("section", { class: "detail" }, h("h2", {}, t(`assess.${key}`)), h("div", { class: "bars" },
        rows.flatMap((row) => [h("span", {}, `${row.group} · ${row.period}`),
          h("div", { class: "bar", style: `width: ${(100 * (row[key] ?? 0)) / top}%` }),
          h("span", {}, row[key] === null ? "—" : unit === "%" ? `${(100 * row[key]).toFixed(1)} %` : `${row[key]} ${unit}`)])));
    });
    const table = h("table", { id: "assessment" }, h("thead", {}, h("tr", {}, ["group", "period", "cases", "closed",
      "due", "on_time", "closure_rate", "on_time_closure_rate", "rework_rate", "extension_rate", "false_positive_rate"]
      .map((name) => h("th", {}, name)))), h("tbody", {}, rows.map((row) => h("tr", {}, [row.group, row.period,
      row.cases, row.closed, row.due, row.on_time, row.closure_rate, row.on_time_closure_rate, row.rework_rate,
      row.extension_rate, row.false_positive_rate].map((value) => h("td", {}, value ?? "—"))))));
    this.root.replaceChildren(h("h1", {}, t("assess.title")), form,
      rows.length ? h("div", {}, table, h("div", { class: "two" }, charts)) : h("div", { class: "empty" }, t("assess.none")));
  }

  async exportTraining() {
    try {
      download(await api("/api/v1/training-data?classes=garbage"), "gridwatch-feedback.zip");
    } catch (error) { toast(error.message); }
  }

  changed() {}
  unmount() {}
}
