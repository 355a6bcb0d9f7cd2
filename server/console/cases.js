// The case board (filters, paging) and a case's page: timeline, evidence, assignment, deadline, allowed actions.

import { api, ApiError, imageUrl, newKey, PICTURE_ROLES, releaseImage, seesPictures, session } from "./api.js";
import { duration, fill, h, toast, when } from "./dom.js";
import { t } from "./i18n.js";

const PHOTO_ROLES = PICTURE_ROLES;  // who may add a case's photos: who may see them
const RUNNING = ["dispatched", "handling", "returned"];  // the deadline's clock runs (as the server's `overdue`)

/** Whether a case in this status can be late: its unit has it and the clock runs (not deferred, not finished). */
function runsLate(status) { return RUNNING.includes(status); }

/** The deadline's note: time left or overdue while the clock runs; afterwards whether it was met. */
function deadlineNote(item, left) {
  if (runsLate(item.status)) return t(left < 0 ? "case.late" : "case.left", { t: duration(left) });
  if (item.on_time === true) return t("case.met");
  if (item.on_time === false) return t("case.missed");
  return t(`status.${item.status}`);
}

/** A deadline's cell, kept true as the clock runs (`tick`, every 30 s): a page left open counts down, and turns
 * red when the case runs late. `dated`: the deadline itself too, with its note. */
function deadlineCell(tag, item, dated, attributes = {}) {
  const cell = h(tag, { ...attributes, class: "deadline" });
  cell.tick = () => {
    const left = item.deadline_at ? (new Date(item.deadline_at) - Date.now()) / 1000 : null;
    cell.classList.toggle("overdue", runsLate(item.status) && left !== null && left < 0);
    if (dated) cell.textContent = item.deadline_at ? `${when(item.deadline_at)} (${deadlineNote(item, left)})` : "—";
    else cell.textContent = left === null || !runsLate(item.status) ? "—" : deadlineNote(item, left);
  };
  cell.tick();
  return cell;
}

const TICK_MS = 30_000;

function ticking(root) {
  return setInterval(() => root.querySelectorAll(".deadline").forEach((cell) => cell.tick()), TICK_MS);
}

const BOARD_PAGE = 100;

const STATUSES = ["collected", "registered", "dispatched", "handling", "feedback", "verified", "closed", "returned",
                  "deferred", "void"];
const CATEGORIES = ["illegal_parking", "street_vending", "litter", "device_fault", "streetlight_fault"];

function select(name, values, chosen) {
  return h("select", { name, "aria-label": name }, h("option", { value: "" }, `${t(`fact.${name}`)}: ${t("cases.all")}`),
    values.map((value) => h("option", { value, selected: value === chosen }, t(`${name}.${value}`))));
}

export class CaseBoard {
  constructor(root, query) { this.root = root; this.query = query; }

  async mount() {
    const q = this.query;
    const form = h("form", { class: "toolbar", onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const params = new URLSearchParams([...data].filter(([, value]) => value));
      location.hash = `#/cases?${params}`;
    } }, select("status", STATUSES, q.get("status")), select("category", CATEGORIES, q.get("category")),
    h("input", { name: "grid_id", placeholder: t("cases.field.grid"), value: q.get("grid_id") ?? "", size: 8 }),
    h("input", { name: "unit_id", placeholder: t("cases.field.unit"), value: q.get("unit_id") ?? "", size: 12 }),
    h("input", { name: "node_id", placeholder: t("cases.field.node"), value: q.get("node_id") ?? "", size: 10 }),
    h("input", { name: "camera_id", placeholder: t("cases.field.camera"), value: q.get("camera_id") ?? "", size: 10 }),
    h("label", {}, h("input", { type: "checkbox", name: "overdue", value: "true", checked: q.get("overdue") === "true" }),
      " ", t("cases.overdue")),
    h("button", { class: "plain", type: "submit" }, t("cases.filter")));
    this.number = Math.max(1, parseInt(q.get("page") ?? "1", 10) || 1);
    this.asked = new URLSearchParams([...q].filter(([key]) => key !== "page"));
    this.title = h("h1", {}, t("cases.title"));
    this.results = h("div", { id: "results" });
    fill(this.root, this.title, form, this.results);
    this.clock = ticking(this.results);
    await this.render();
  }

  /** The page of cases and the pager; the form is left as it is, with whatever the operator is typing in it. */
  async render() {
    const { number, asked } = this;
    const ticket = this.ticket = (this.ticket ?? 0) + 1;
    const page = await api(`/api/v1/cases?${new URLSearchParams([...asked, ["page", String(number)],
                                                                 ["page_size", String(BOARD_PAGE)]])}`);
    if (ticket !== this.ticket) return;  // a later reading is under way (or shown): an older answer never wins
    const pages = Math.max(1, Math.ceil(page.total / BOARD_PAGE));
    const go = (to) => { location.hash = `#/cases?${new URLSearchParams([...asked, ["page", String(to)]])}`; };
    const pager = h("div", { class: "toolbar", id: "pager" },
      h("button", { class: "plain", id: "previous-page", disabled: number <= 1, onclick: () => go(Math.min(number - 1, pages)) }, "‹"),
      h("span", { class: "meta" }, t("cases.page", { n: number, of: pages })),
      h("button", { class: "plain", id: "next-page", disabled: number >= pages, onclick: () => go(number + 1) }, "›"));
    const rows = page.items.map((item) => {
      return h("tr", { class: "link", dataset: { caseId: item.id }, onclick: () => { location.hash = `#/case/${item.id}`; } },
        h("td", {}, `#${item.id}`), h("td", {}, h("span", { class: `status ${item.status}` }, t(`status.${item.status}`))),
        h("td", {}, t(`category.${item.category}`)), h("td", {}, item.assignment?.unit_name ?? "—"),
        h("td", {}, item.assignment?.grid_id ?? "—"), h("td", {}, when(item.opened_at)),
        deadlineCell("td", item, false));
    });
    this.title.textContent = `${t("cases.title")} (${page.total})`;
    // a page past the last (cases left while the operator was on it) keeps the way back
    fill(this.results, rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["#", t("fact.status"), t("fact.category"), t("fact.unit"), t("fact.grid"),
                                   t("fact.opened"), t("fact.deadline")].map((name) => h("th", {}, name)))),
      h("tbody", {}, rows)) : h("div", { class: "empty" }, t("cases.none")),
    ...(pages > 1 || number > 1 ? [pager] : []));
  }

  /** A case changed: the cases are read again a moment later (changes come in bursts); the filter form is not
   * redrawn, so nothing the operator is typing is lost and the board never stops following. */
  changed() {
    clearTimeout(this.timer);
    this.burst ??= Date.now();  // a steady stream of changes still redraws at least every two seconds
    this.timer = setTimeout(() => { this.burst = null; this.render(); },
      Math.max(0, Math.min(300, this.burst + 2000 - Date.now())));
  }
  /** The live stream came back after a break: read the cases afresh, leaving the form as it is. */
  resync() { this.render(); }
  unmount() { clearTimeout(this.timer); clearInterval(this.clock); }
}

const NEEDS = {
  dispatch: ["unit_id"], reassign: ["unit_id", "reason"], return: ["reason"], extend: ["extend_minutes", "reason"],
  defer: ["reason"], rework: ["reason"], void: ["void_reason", "reason"],
};

export class CasePage {
  constructor(root, caseId) { this.root = root; this.caseId = caseId; this.reads = 0; this.gone = false; }

  async mount() {
    const read = ++this.reads;
    const item = await api(`/api/v1/cases/${this.caseId}`);
    // two changes close together: the later read draws, an older answer arriving last does not (nor, the page
    // left, any answer)
    if (read !== this.reads || this.gone) return;
    this.clock ??= ticking(this.root);
    const typed = this.typed();  // a live change redraws the page, not what the operator is typing
    const assignment = item.assignment ?? {};
    const gallery = h("div", { class: "gallery" });
    const photos = h("div", { class: "gallery", id: "photos" });
    fill(this.root,
      h("h1", {}, `#${item.id} ${t(`category.${item.category}`)} (${item.code}) `, h("span", { class: `status ${item.status}`, id: "case-status" }, t(`status.${item.status}`))),
      h("div", { class: "two" },
        h("section", { class: "detail" },
          h("dl", { class: "facts" },
            h("dt", {}, t("fact.source")), h("dd", {}, item.camera_id ? `${item.node_id} / ${item.camera_id} / ${item.zone_id}` : item.source),
            item.description && h("dt", {}, t("fact.description")), item.description && h("dd", {}, item.description),
            item.address && h("dt", {}, t("fact.address")), item.address && h("dd", {}, item.address),
            h("dt", {}, t("fact.unit")), h("dd", { id: "case-unit" }, assignment.unit_name ?? "—",
              assignment.unit_phone && ` ${assignment.unit_phone}`),
            h("dt", {}, t("fact.grid")), h("dd", {}, `${assignment.grid_id ?? "—"} ${assignment.community ?? ""} ${assignment.street ?? ""}`),
            h("dt", {}, t("fact.chief")), h("dd", {}, assignment.street_chief ? `${assignment.street_chief.name} ${assignment.street_chief.phone ?? ""}` : "—"),
            h("dt", {}, t("fact.on_duty")), h("dd", {}, assignment.on_duty ? `${assignment.on_duty.name} ${assignment.on_duty.phone ?? ""}` : "—"),
            h("dt", {}, t("fact.deadline")), deadlineCell("dd", item, true, { id: "case-deadline" })),
          item.reports.length > 0 && h("h2", {}, t("case.reports")),
          item.reports.length > 0 && h("ol", { class: "timeline", id: "reports" }, item.reports.map((report) => h("li", {},
            h("strong", {}, when(report.at)), ` · ${report.via}`, report.address && ` · ${report.address}`,
            h("div", {}, report.description),
            report.reporter && h("div", { class: "meta" }, Object.values(report.reporter).join(" · ")),
            /^https?:\/\//.test(report.media_url ?? "") && h("a", { href: report.media_url, target: "_blank",
                                                                 rel: "noopener noreferrer" }, t("case.report_photo"))))),
          h("h2", {}, t("case.actions")), this.actions(item),
          h("h2", {}, t("case.evidence")), gallery,
          h("h2", {}, t("case.photos")), this.photos(item, photos)),
        h("section", { class: "detail" }, h("h2", {}, t("case.timeline")),
          h("ol", { class: "timeline", id: "timeline" }, item.transitions.map((step) => h("li", {},
            h("strong", {}, t(`action.${step.action}`)), ` → ${t(`status.${step.to_status}`)} · ${when(step.at)} · ${step.actor}`,
            h("div", { class: "meta" }, step.reason)))))));
    this.restore(typed);
    if (!seesPictures()) return;  // people and number plates: integrators get the facts only
    // one picture refused (another unit's case, for field staff) or gone leaves the rest of the page in place
    this.shown = [...new Set([...(this.shown ?? []), ...item.evidence_urls, ...item.crop_urls,
                              ...item.photos.map((photo) => photo.url)])];
    const picture = (url, alt) => imageUrl(url).then((src) => h("img", { src, alt }), () => h("span", { class: "meta" }, "—"));
    for (const url of [...item.evidence_urls, ...item.crop_urls]) {
      if (this.gone) return;  // left while loading: what was fetched is freed by unmount, the rest is not asked for
      gallery.append(await picture(url, "evidence"));
    }
    for (const photo of item.photos) {
      if (this.gone) return;
      photos.append(h("figure", { class: "photo" }, await picture(photo.url, photo.caption ?? photo.stage),
        h("figcaption", {}, `${t(`photo.stage.${photo.stage}`)} · ${when(photo.at)} · ${photo.actor}`, photo.caption && h("div", {}, photo.caption))));
    }
  }

  /** The case's photos (drawn into `gallery` once fetched) and, for those who may add one, the form to add it. */
  photos(item, gallery) {
    const mayAdd = PHOTO_ROLES.has(session.caller?.role);
    if (!item.photos.length) gallery.append(h("p", { class: "meta" }, t("photo.none")));
    if (!mayAdd) return gallery;
    // one form for the page's life: a live change redraws the case, not the photo picked and the caption typed
    this.photoForm ??= this.photoFormFor();
    return h("div", {}, gallery, this.photoForm);
  }

  photoFormFor() {
    const file = h("input", { name: "photo", type: "file", accept: "image/jpeg,image/png", "aria-label": t("photo.file"), required: true });
    const stage = h("select", { name: "stage", "aria-label": "stage" },
      ["after", "before", "other"].map((value) => h("option", { value }, t(`photo.stage.${value}`))));
    const caption = h("input", { name: "caption", placeholder: t("photo.caption"), size: 24, maxlength: 500 });
    const form = h("form", { class: "actions", id: "photo-form", onsubmit: async (event) => {
      event.preventDefault();
      const query = new URLSearchParams({ stage: stage.value, ...(caption.value.trim() ? { caption: caption.value.trim() } : {}) });
      try {
        await api(`/api/v1/cases/${this.caseId}/photos?${query}`, { method: "POST", file: file.files[0] });
        form.reset();
        await this.mount();
      } catch (error) {
        toast(`${t("photo.add")}: ${error.message}`);
      }
    } }, file, stage, caption, h("button", { type: "submit", class: "plain" }, t("photo.add")));
    return form;
  }

  /** What the action form on screen holds (values, and the field with the focus). */
  typed() {
    const form = this.root.querySelector("#case-actions");
    if (!form) return null;
    const values = Object.fromEntries([...form.elements].filter((field) => field.name).map((field) => [field.name, field.value]));
    return { values, focused: form.contains(document.activeElement) ? document.activeElement.name : null };
  }

  restore(typed) {
    const form = this.root.querySelector("#case-actions");
    if (!typed || !form) return;
    for (const field of form.elements) if (field.name in typed.values) field.value = typed.values[field.name];
    if (typed.focused) form.elements.namedItem(typed.focused)?.focus();
  }

  actions(item) {
    if (!item.allowed_actions.length) return h("p", { class: "meta" }, t("case.none"));
    const form = h("form", { class: "actions", id: "case-actions" });
    const fields = {
      reason: h("input", { name: "reason", placeholder: t("case.reason"), size: 24 }),
      unit_id: h("input", { name: "unit_id", placeholder: t("case.unit"), size: 12 }),
      extend_minutes: h("input", { name: "extend_minutes", type: "number", min: 1, placeholder: t("case.minutes") }),
      void_reason: h("select", { name: "void_reason", "aria-label": t("case.void_reason") },
        ["false_positive", "duplicate", "not_our_responsibility", "other"].map((value) => h("option", { value }, t(`void.${value}`)))),
    };
    form.append(...Object.values(fields), ...item.allowed_actions.map((action) => h("button", {
      type: "button", class: action === "void" ? "danger" : "plain", dataset: { action },
      onclick: () => this.act(action, fields),
    }, t(`action.${action}`))));
    return form;
  }

  async act(action, fields) {
    const body = { action };
    for (const name of new Set(["reason", ...(NEEDS[action] ?? [])])) {  // a reason typed goes with any action
      const value = fields[name].value.trim();
      if (value) body[name] = name === "extend_minutes" ? Number(value) : value;
    }
    // the same action sent again after its answer was lost (the network dropped it) carries the same key, so the
    // server takes it once: a second click on "extend" is not a second extension
    const sent = JSON.stringify(body);
    if (this.unanswered?.sent !== sent) this.unanswered = { sent, key: newKey() };
    try {
      await api(`/api/v1/cases/${this.caseId}/actions`, {
        method: "POST", body, headers: { "Idempotency-Key": this.unanswered.key } });
    } catch (error) {
      // refused by the server itself (4xx but a timeout or a throttle): it has decided, and took nothing. Anything
      // else (no answer, a proxy's 502 or 504, a 5xx) may have come after the server took it: the key is kept
      const refused = error instanceof ApiError && error.status >= 400 && error.status < 500
        && ![408, 429].includes(error.status);
      if (refused) this.unanswered = null;
      toast(refused ? (error.status === 409 ? error.message : `${action}: ${error.message}`)
        : t("case.unanswered", { action: t(`action.${action}`) }));
      return;
    }
    this.unanswered = null;
    this.root.querySelector("#case-actions")?.reset();  // done: the next action starts from an empty form
    await this.mount();
  }

  changed(message) { if (message.case_id === Number(this.caseId)) this.mount(); }
  /** The live stream came back after a break: read the case afresh, keeping what is being typed. */
  resync() { return this.mount(); }
  /** Frees the page's pictures (a case holds up to 50 photos of some megabytes each). */
  unmount() { this.gone = true; clearInterval(this.clock); (this.shown ?? []).forEach(releaseImage); }
}

export class Board {
  constructor(root) { this.root = root; }

  async mount() {
    const board = await (await fetch("/public/board")).json();
    fill(this.root, h("h1", {}, t("board.title")), ...board.streets.map((street) => h("section", {},
      h("h2", {}, street.street), h("table", {}, h("tbody", {}, street.grids.map((grid) => h("tr", {},
        h("td", {}, grid.grid_id), h("td", {}, grid.name ?? ""), h("td", {}, grid.community ?? ""),
        h("td", {}, grid.street_chief ?? "—"), h("td", {}, grid.phone ?? "—"))))))),
    h("h2", {}, t("board.units")), h("table", {}, h("tbody", {}, board.units.map((unit) => h("tr", {},
      h("td", {}, unit.name), h("td", {}, unit.phone ?? "—"))))));
  }

  changed() {}
  unmount() {}
}
