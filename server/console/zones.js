// The zone editor: a camera's latest snapshot with its zones drawn over it. Click to add corners, pick the rule,
// dwell and hours, save: the server sends the zones to the node as its remote config, and the page shows whether
// the node applied or refused them (and why).

import { api, imageUrl } from "./api.js";
import { fill, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const RULES = ["no_parking", "no_vending", "no_litter", "vending_allowed"];

/** `{start, end}` of hours written as 07:00-19:00 (also 7:00 - 19:00, or with a dash of another kind); null when
 * they cannot be read. */
export function parseHours(text) {
  const match = /^(\d{1,2}):(\d\d)\s*[-–—~到至]\s*(\d{1,2}):(\d\d)$/.exec(text);
  if (!match) return null;
  const [hours1, minutes1, hours2, minutes2] = match.slice(1).map(Number);
  if (hours1 > 23 || hours2 > 24 || minutes1 > 59 || minutes2 > 59 || (hours2 === 24 && minutes2 > 0)) return null;
  const clock = (hours, minutes) => `${String(hours).padStart(2, "0")}:${String(minutes).padStart(2, "0")}`;
  return { start: clock(hours1, minutes1), end: clock(hours2 === 24 ? 0 : hours2, minutes2) };
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  return node;
}

const SNAPSHOT_TRIES = 5;

export class ZoneEditor {
  constructor(root, query) {
    this.root = root;
    this.node = query.get("node");
    this.camera = query.get("camera");
    this.zones = [];
    this.current = -1;
    this.badHours = new WeakMap();  // zone -> hours typed that cannot be read: kept on screen, never sent
  }

  async mount() {
    const cameras = await api("/api/v1/cameras");
    const picker = h("select", { id: "zone-camera", "aria-label": t("zones.camera"), onchange: (event) => {
      const [node, camera] = event.target.value.split("/");
      location.hash = `#/zones?node=${encodeURIComponent(node)}&camera=${encodeURIComponent(camera)}`;
    } }, h("option", { value: "" }, t("zones.camera")), cameras.map((c) => h("option", {
      value: `${c.node_id}/${c.camera_id}`, selected: c.node_id === this.node && c.camera_id === this.camera,
    }, `${c.node_id} / ${c.camera_id}`)));
    fill(this.root, h("h1", {}, t("zones.title")), h("div", { class: "toolbar" }, picker));
    if (!this.node || !this.camera) return;
    const config = await api(`/api/v1/nodes/${this.node}/config`);
    this.config = config;
    this.zones = structuredClone(config.cameras[this.camera]?.zones ?? []);
    this.current = this.zones.length ? 0 : -1;
    this.picture = h("img", { class: "zone-picture", alt: "snapshot" });
    this.overlay = svg("svg", { viewBox: "0 0 1 1", preserveAspectRatio: "none", class: "zone-overlay", id: "zone-canvas",
                                onclick: (event) => this.addPoint(event) });
    this.form = h("div", { class: "detail", id: "zone-form" });
    this.state = h("p", { id: "zone-state", class: "meta" }, this.describe(config));
    this.root.append(h("div", { class: "two" }, h("div", { class: "zone-stage" }, this.picture, this.overlay),
      h("div", {}, this.form, this.state)));
    if (!await this.showSnapshot()) {
      this.state.textContent = t("zones.no_snapshot");
      api(`/api/v1/nodes/${this.node}/commands`, { method: "POST", body: { action: "snapshot", camera_id: this.camera } })
        .then(() => this.awaitSnapshot(SNAPSHOT_TRIES)).catch((error) => toast(error.message));
    }
    this.draw();
  }

  /** The camera's latest snapshot under the zones; false when there is none yet. */
  async showSnapshot() {
    try {
      const blob = await api(`/api/v1/nodes/${this.node}/cameras/${this.camera}/snapshot`);
      this.freePicture();
      this.picture.src = URL.createObjectURL(blob);
      return true;
    } catch {
      return false;
    }
  }

  /** After asking the node for a snapshot: look for it every 2 s, a few times (a node offline never sends one),
   * keeping the zones being drawn; stops when the page is left. */
  awaitSnapshot(tries) {
    this.snapshotTimer = setTimeout(async () => {
      if (await this.showSnapshot()) {
        // back to what the config says, unless the operator has saved meanwhile (the line then says that)
        if (this.state.textContent === t("zones.no_snapshot")) this.state.textContent = this.describe(this.config);
      }
      else if (tries > 1) this.awaitSnapshot(tries - 1);
      else this.state.textContent = t("zones.no_snapshot_came");
    }, 2000);
  }

  describe(config) {
    if (!config.config_version) return t("zones.never");
    if (!config.status) return t("zones.waiting", { v: config.config_version });
    return config.status.state === "applied" ? t("zones.applied", { v: config.config_version })
      : t("zones.refused", { v: config.config_version, reason: config.status.reason ?? "" });
  }

  addPoint(event) {
    if (this.current < 0) this.newZone();
    const box = this.overlay.getBoundingClientRect();
    const x = (event.clientX - box.left) / box.width, y = (event.clientY - box.top) / box.height;
    this.zones[this.current].polygon.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
    this.draw();
  }

  newZone() {
    // the first number no zone has: after a delete, the count names a zone that is still there
    const taken = new Set(this.zones.map((zone) => zone.zone_id));
    let number = 1;
    while (taken.has(`zone-${number}`)) number += 1;
    this.zones.push({ zone_id: `zone-${number}`, rule: "no_parking", dwell_seconds: 180, polygon: [] });
    this.current = this.zones.length - 1;
    this.draw();
  }

  draw() {
    fill(this.overlay, ...this.zones.map((zone, index) => {
      const shape = svg(zone.polygon.length > 2 ? "polygon" : "polyline", {
        points: zone.polygon.map((p) => p.join(",")).join(" "), class: `zone ${zone.rule}${index === this.current ? " current" : ""}`,
        "vector-effect": "non-scaling-stroke",
      });
      return shape;
    }));
    const zone = this.zones[this.current];
    // what is typed goes into the zone as it is typed, nothing redrawn: a redraw on `change` (fired as the mouse
    // went down on Save) replaced the Save button under the click, and nothing was sent
    const field = (name, attributes) => h("input", { name, value: zone?.[name] ?? "", ...attributes, oninput: (event) => {
      const text = event.target.value;
      zone[name] = attributes.type === "number" && text !== "" ? Number(text) : text;
      if (name === "zone_id") this.form.querySelector(".zone-tab.primary").textContent = text;
    } });
    fill(this.form,
      h("div", { class: "toolbar" }, this.zones.map((z, index) => h("button", {
        type: "button", class: `zone-tab ${index === this.current ? "primary" : "plain"}`,
        onclick: () => { this.current = index; this.draw(); } }, z.zone_id)),
        h("button", { type: "button", class: "plain", id: "zone-new", onclick: () => this.newZone() }, t("zones.new"))),
      zone ? h("dl", { class: "facts" },
        h("dt", {}, "zone_id"), h("dd", {}, field("zone_id", { id: "zone-id" })),
        h("dt", {}, t("zones.rule")), h("dd", {}, h("select", { name: "rule", id: "zone-rule", onchange: (event) => {
          zone.rule = event.target.value; this.draw(); } }, RULES.map((rule) => h("option", { value: rule, selected: rule === zone.rule }, t(`rule.${rule}`))))),
        h("dt", {}, t("zones.dwell")), h("dd", {}, field("dwell_seconds", { type: "number", min: 1, required: true, id: "zone-dwell" })),
        h("dt", {}, t("zones.hours")), h("dd", {}, this.hoursField(zone)),
        h("dt", {}, t("zones.corners")), h("dd", { id: "zone-corners" }, String(zone.polygon.length))) : h("p", { class: "meta" }, t("zones.hint")),
      h("div", { class: "actions" },
        zone && h("button", { type: "button", class: "plain", onclick: () => { zone.polygon.pop(); this.draw(); } }, t("zones.undo")),
        zone && h("button", { type: "button", class: "danger", onclick: () => {
          this.zones.splice(this.current, 1); this.current = this.zones.length - 1; this.draw(); } }, t("zones.delete")),
        h("button", { type: "button", class: "primary", id: "zone-save", onclick: () => this.save() }, t("zones.save"))));
  }

  /** The zone's hours; what cannot be read stays as typed, marked, through redraws, until it is put right. */
  hoursField(zone) {
    const bad = this.badHours.get(zone);
    const input = h("input", { id: "zone-hours", placeholder: "07:00-19:00",
      value: bad ?? (zone.schedule?.[0] ? `${zone.schedule[0].start}-${zone.schedule[0].end}` : ""),
      title: zone.schedule?.[0]?.days ? zone.schedule[0].days.join(" ") : "", onchange: (event) => {
        const text = event.target.value.trim();
        const hours = parseHours(text);
        event.target.setCustomValidity(hours || !text ? "" : t("zones.bad_hours"));
        if (hours || !text) this.badHours.delete(zone); else this.badHours.set(zone, text);
        if (!text) zone.schedule = [];  // empty: all day, as asked
            // the window's days (Mon-Fri) and the zone's other windows stay as they were
        else if (hours) zone.schedule = [{ ...(zone.schedule?.[0] ?? {}), ...hours }, ...(zone.schedule?.slice(1) ?? [])];
      } });
    input.setCustomValidity(bad === undefined ? "" : t("zones.bad_hours"));
    return input;
  }

  async save() {
    const mistyped = this.zones.findIndex((zone) => this.badHours.has(zone));
    const invalid = this.form.querySelector(":invalid");
    if (mistyped >= 0 || invalid) {  // a mistyped field is not taken as "always"
      if (mistyped >= 0 && mistyped !== this.current) { this.current = mistyped; this.draw(); }  // shown where it is
      toast(mistyped >= 0 || invalid.id === "zone-hours" ? t("zones.bad_hours")
        : `${invalid.name}: ${invalid.validationMessage}`);
      return;
    }
    const ids = this.zones.map((zone) => zone.zone_id);
    const twice = ids.find((id, index) => ids.indexOf(id) !== index);
    if (twice !== undefined) {
      toast(t("zones.same_id", { id: twice }));
      return;
    }
    try {
      const sent = await api(`/api/v1/nodes/${this.node}/cameras/${this.camera}/zones`, { method: "PUT", body: { zones: this.zones } });
      this.state.textContent = this.describe(sent);
      this.poll(sent.config_version);
    } catch (error) {
      toast(error.message);
    }
  }

  async poll(version, tries = 60) {
    const config = await api(`/api/v1/nodes/${this.node}/config`);
    if (config.config_version !== version) return;
    this.state.textContent = this.describe(config);
    if (!config.status && tries > 0) this.timer = setTimeout(() => this.poll(version, tries - 1), 1000);
  }

  changed() {}
  /** The live stream came back after a break: the node's answer is read again; the zones being drawn stay. */
  async resync() {
    if (!this.state || !this.node) return;
    this.config = await api(`/api/v1/nodes/${this.node}/config`);
    if (this.state.textContent !== t("zones.no_snapshot")) this.state.textContent = this.describe(this.config);
  }
  freePicture() { if (this.picture?.src.startsWith("blob:")) URL.revokeObjectURL(this.picture.src); }
  unmount() { clearTimeout(this.timer); clearTimeout(this.snapshotTimer); this.freePicture(); }
}
