// The review queue: detections waiting for an operator (cases in `collected`), newest first, one decision a key.

import { api, imageUrl } from "./api.js";
import { duration, h, toast, when } from "./dom.js";
import { t } from "./i18n.js";

const REASONS = ["false_positive", "duplicate", "not_our_responsibility"];

export class ReviewQueue {
  constructor(root) {
    this.root = root;
    this.items = [];
    this.current = 0;
    this.selected = new Set();
    this.onKey = (event) => this.key(event);
  }

  async mount() {
    document.addEventListener("keydown", this.onKey);
    await this.reload();
  }

  unmount() { document.removeEventListener("keydown", this.onKey); }

  async reload() {
    const page = await api("/api/v1/cases?status=collected&sort=-opened_at&page_size=500");
    this.items = page.items;
    this.current = Math.min(this.current, Math.max(0, this.items.length - 1));
    this.render();
  }

  /** A case change from the live feed. */
  changed(message) {
    if (message.status === "collected" && message.action === "collect") {
      if (this.items.some((item) => item.id === message.case_id)) return;
      api(`/api/v1/cases/${message.case_id}`).then((item) => {
        if (item.status !== "collected" || this.items.some((i) => i.id === item.id)) return;  // decided meanwhile
        const currentId = this.items[this.current]?.id;
        this.items.unshift(item);
        this.current = currentId === undefined ? 0 : this.items.findIndex((i) => i.id === currentId);
        toast(t("review.arrived", { id: item.id }));
        this.render();
      });
    } else if (message.status !== "collected") {
      this.remove(message.case_id);
    }
  }

  remove(caseId) {
    const index = this.items.findIndex((item) => item.id === caseId);
    if (index < 0) return;
    this.items.splice(index, 1);
    this.selected.delete(caseId);
    if (this.current > index || this.current >= this.items.length) this.current = Math.max(0, this.current - 1);
    this.render();
  }

  key(event) {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const item = this.items[this.current];
    const actions = {
      j: () => this.move(1), ArrowDown: () => this.move(1), k: () => this.move(-1), ArrowUp: () => this.move(-1),
      c: () => item && this.decide([item.id], "file"), Enter: () => item && this.decide([item.id], "file"),
      f: () => item && this.decide([item.id], "void", "false_positive"),
      d: () => item && this.decide([item.id], "void", "duplicate"),
      n: () => item && this.decide([item.id], "void", "not_our_responsibility"),
      x: () => item && this.toggle(item.id),
    };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  }

  move(step) {
    if (!this.items.length) return;
    this.current = Math.max(0, Math.min(this.items.length - 1, this.current + step));
    this.render();
  }

  toggle(id) {
    this.selected.has(id) ? this.selected.delete(id) : this.selected.add(id);
    this.render();
  }

  async decide(ids, action, voidReason) {
    for (const id of ids) {
      try {
        await api(`/api/v1/cases/${id}/actions`, {
          method: "POST", body: { action, ...(voidReason ? { void_reason: voidReason } : {}) },
        });
        toast(t(action === "file" ? "review.confirmed" : "review.rejected", { id }));
        this.remove(id);
      } catch (error) {
        toast(`${id}: ${error.message}`);
        if (error.status === 409) this.remove(id);  // someone else decided first
      }
    }
  }

  render() {
    this.root.replaceChildren(h("h1", {}, `${t("review.title")} (${this.items.length})`));
    if (!this.items.length) {
      this.root.append(h("div", { class: "empty" }, t("review.empty")));
      return;
    }
    const list = h("ol", { id: "queue", "aria-label": t("review.title") }, this.items.map((item, index) => h("li", {
      class: index === this.current ? "current" : "", dataset: { caseId: item.id },
      onclick: () => { this.current = index; this.render(); },
    }, h("input", {
      type: "checkbox", checked: this.selected.has(item.id), "aria-label": `select ${item.id}`,
      onclick: (event) => { event.stopPropagation(); this.toggle(item.id); },
    }), h("div", {}, h("div", {}, `#${item.id} ${item.label} · ${item.category}`),
      h("div", { class: "meta" }, `${item.camera_id ?? item.source} · ${when(item.opened_at)} · ${item.score.toFixed(2)}`)))));
    const bulk = h("div", { class: "actions" },
      h("button", { class: "plain", onclick: () => this.decide([...this.selected], "file"),
                    disabled: !this.selected.size }, `${t("review.bulk_confirm")} (${this.selected.size})`),
      h("button", { class: "plain", onclick: () => this.decide([...this.selected], "void", "false_positive"),
                    disabled: !this.selected.size }, t("review.bulk_reject")));
    const detail = h("section", { class: "detail", id: "review-detail" });
    this.root.append(h("div", { class: "queue" }, h("div", {}, list, bulk), detail));
    list.children[this.current]?.scrollIntoView({ block: "nearest" });
    this.renderDetail(detail, this.items[this.current]);
  }

  async renderDetail(detail, item) {
    const frame = h("img", { class: "frame", alt: "evidence" });
    const crop = h("img", { class: "crop", alt: "crop" });
    detail.append(
      h("div", { class: "evidence" }, frame, crop),
      h("dl", { class: "facts" },
        h("dt", {}, t("fact.category")), h("dd", {}, `${item.category} (${item.code})`),
        h("dt", {}, t("fact.camera")), h("dd", {}, item.camera_id ? `${item.node_id} / ${item.camera_id}` : item.source),
        h("dt", {}, t("fact.zone")), h("dd", {}, item.zone_id ?? "—"),
        h("dt", {}, t("fact.dwell")), h("dd", {}, duration(item.dwell_seconds)),
        h("dt", {}, t("fact.score")), h("dd", {}, item.score.toFixed(2)),
        item.description && h("dt", {}, t("fact.description")), item.description && h("dd", {}, item.description),
        h("dt", {}, t("fact.opened")), h("dd", {}, when(item.opened_at))),
      h("div", { class: "actions" },
        h("button", { class: "primary", id: "confirm", onclick: () => this.decide([item.id], "file") },
          t("review.confirm"), " ", h("kbd", {}, "C")),
        REASONS.map((reason, index) => h("button", {
          class: "danger", id: `reject-${reason}`, onclick: () => this.decide([item.id], "void", reason),
        }, t(`review.${reason}`), " ", h("kbd", {}, "FDN"[index])))),
      h("p", { class: "meta" }, `${t("review.keys")}: J/↓ ${t("review.next")}, K/↑ ${t("review.previous")}, X ☑`));
    const full = await api(`/api/v1/cases/${item.id}`);
    if (full.evidence_urls[0]) frame.src = await imageUrl(full.evidence_urls[0]);
    else frame.remove();
    if (full.crop_urls[0]) crop.src = await imageUrl(full.crop_urls[0]);
    else crop.remove();
  }
}
