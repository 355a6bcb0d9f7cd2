// The review queue: detections waiting for an operator (cases in `collected`), newest first, one decision a key.
//
// Built for a long queue: it loads a page at a time (keyset paging, so decisions made meanwhile move nothing), moves
// between items without redrawing the list, shows the next item as soon as a decision is made (the request runs
// behind it and puts the item back if it fails) and fetches the next items' evidence before they are needed.

import { api, imageUrl, operates, releaseImage, seesPictures } from "./api.js";
import { duration, fill, h, toast, when } from "./dom.js";
import { t } from "./i18n.js";

const REASONS = ["false_positive", "duplicate", "not_our_responsibility"];
/** Whether this console's caller may confirm or reject (operators, as the workflow's table): others see the queue,
 * read only. */
const mayDecide = operates;
const PAGE = 200;
const PREFETCH = 2;
const EVIDENCE_TRIES = 5;  // a case announced before its images are stored: read again for up to 5 s

export class ReviewQueue {
  constructor(root) {
    this.root = root;
    this.items = [];
    this.total = 0;
    this.current = 0;
    this.selected = new Set();
    this.details = new Map();  // case id -> Promise of {full, frame, crop}
    this.placed = new Map();  // case id -> {lat, lon} as typed, kept through redraws until it is decided
    this.decidedAt = 0;
    this.exhausted = false;
    this.loading = null;
    this.onKey = (event) => this.key(event);
  }

  async mount() {
    document.addEventListener("keydown", this.onKey);
    await this.reload();
  }

  /** Stops the keys and frees every image the queue fetched (viewed, or fetched ahead). */
  unmount() {
    document.removeEventListener("keydown", this.onKey);
    for (const caseId of [...this.details.keys()]) this.forget(caseId);
  }

  /** The first page afresh, staying on the item being looked at and keeping the ticks of those still waiting. */
  async reload() {
    const on = this.items[this.current]?.id;
    const page = await api(`/api/v1/cases?status=collected&sort=-id&page_size=${PAGE}`);
    const items = page.items;
    this.exhausted = page.items.length < PAGE;
    // an operator past the first page stays where they were: the pages down to the item they look at are read too
    while (on !== undefined && !this.exhausted && items[items.length - 1].id > on) {
      const next = await api(`/api/v1/cases?status=collected&sort=-id&page_size=${PAGE}&id_below=${items[items.length - 1].id}`);
      items.push(...next.items);
      this.exhausted = next.items.length < PAGE;
    }
    this.items = items;
    this.total = page.total;
    const waiting = new Set(this.items.map((item) => item.id));
    this.selected = new Set([...this.selected].filter((id) => waiting.has(id)));
    const still = this.items.findIndex((item) => item.id === on);
    this.current = still >= 0 ? still : Math.min(this.current, Math.max(0, this.items.length - 1));
    this.render();
  }

  /** The live stream came back after a break (decisions may have been missed): read the queue afresh. */
  resync() { return this.reload(); }

  /** The next page, once the operator comes near the end of what is loaded. */
  more() {
    if (this.exhausted || this.loading || this.current < this.items.length - 20) return;
    const last = this.items[this.items.length - 1];
    this.loading = api(`/api/v1/cases?status=collected&sort=-id&page_size=${PAGE}&id_below=${last ? last.id : 1}`)
      .then((page) => {
        const known = new Set(this.items.map((item) => item.id));
        const fresh = page.items.filter((item) => !known.has(item.id));
        this.exhausted = page.items.length < PAGE;
        this.items.push(...fresh);
        this.list?.append(...fresh.map((item) => this.row(item)));
      })
      .finally(() => { this.loading = null; });
  }

  /** A case change from the live feed. */
  changed(message) {
    if (message.status === "collected" && message.action === "collect") {
      if (this.items.some((item) => item.id === message.case_id)) return;
      api(`/api/v1/cases/${message.case_id}`).then((item) => {
        if (item.status !== "collected" || this.items.some((i) => i.id === item.id)) return;  // decided meanwhile
        this.items.unshift(item);
        this.total += 1;
        if (this.items.length > 1) this.current += 1;  // the operator stays on the item they are looking at
        toast(t("review.arrived", { id: item.id }));
        this.render();
      });
    } else if (message.status !== "collected") {
      // decided elsewhere: out of the queue, and out of its count even if not loaded yet (further down the queue)
      if (!this.remove(message.case_id) && message.previous_status === "collected") {
        this.total = Math.max(0, this.total - 1);
        if (this.title) this.title.textContent = `${t("review.title")} (${this.total})`;
      }
    }
  }

  /** Takes a decided case out of the queue; returns where it was and what it was, to put it back on failure. */
  remove(caseId) {
    const index = this.items.findIndex((item) => item.id === caseId);
    if (index < 0) return null;
    const [item] = this.items.splice(index, 1);
    this.total = Math.max(0, this.total - 1);
    this.selected.delete(caseId);
    if (this.current > index || this.current >= this.items.length) this.current = Math.max(0, this.current - 1);
    this.list?.children[index]?.remove();
    this.forget(caseId);
    this.show();
    return { index, item };
  }

  restore({ index, item }) {
    if (this.items.some((i) => i.id === item.id)) return;
    const at = Math.min(index, this.items.length);
    this.items.splice(at, 0, item);
    if (this.items.length > 1 && at <= this.current) this.current += 1;  // the operator stays on the item shown
    this.total += 1;
    this.render();
  }

  key(event) {
    // only where text is typed: a row's checkbox, ticked with the mouse, keeps the focus and the keys must still work
    const typing = "input:not([type=checkbox]):not([type=radio]), select, textarea, [contenteditable]";
    if (event.target.closest(typing) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.repeat) return;  // a key held down decides one item, not a run of them
    // Enter (or Space) on a button or link is that button's: "False positive" reached by Tab is not a confirmation
    if ((event.key === "Enter" || event.key === " ") && event.target.closest("button, a, summary")) return;
    const item = this.items[this.current];
    const actions = {
      j: () => this.move(1), ArrowDown: () => this.move(1), k: () => this.move(-1), ArrowUp: () => this.move(-1),
      ...(mayDecide() ? {
        c: () => item && this.confirm(item), Enter: () => item && this.confirm(item),
        f: () => item && this.decide([item.id], "void", "false_positive"),
        d: () => item && this.decide([item.id], "void", "duplicate"),
        n: () => item && this.decide([item.id], "void", "not_our_responsibility"),
        x: () => item && this.toggle(item.id),
      } : {}),
    };
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;  // C as c, with Caps Lock or Shift
    if (actions[key]) { event.preventDefault(); actions[key](); }
  }

  move(step) {
    if (!this.items.length) return;
    this.current = Math.max(0, Math.min(this.items.length - 1, this.current + step));
    this.show();
  }

  toggle(id) {
    this.selected.has(id) ? this.selected.delete(id) : this.selected.add(id);
    const index = this.items.findIndex((item) => item.id === id);
    const box = this.list?.children[index]?.querySelector("input");
    if (box) box.checked = this.selected.has(id);
    this.updateBulk();
  }

  /** Files the item shown, placed where the operator typed if it came without a position (a report giving an
   * address only); one coordinate without the other is not sent. */
  confirm(item) {
    const { lat = "", lon = "" } = this.placed.get(item.id) ?? {};
    if (!lat && !lon) return this.decide([item.id], "file");
    const location = { lat: Number(lat), lon: Number(lon) };
    if (!lat || !lon || !Number.isFinite(location.lat) || !Number.isFinite(location.lon)) {
      toast(t("review.place_both"));
      return undefined;
    }
    return this.decide([item.id], "file", undefined, location);
  }

  /** The next item shows at once; each request runs behind it, and a failed one puts its item back. */
  async decide(ids, action, voidReason, location) {
    // a double click (or a second within a blink) would land on the next item, drawn at once where this one was:
    // decided unseen
    if (Date.now() - this.decidedAt < 300) return;
    this.decidedAt = Date.now();
    const taken = ids.map((id) => this.remove(id)).filter(Boolean);
    for (const removed of taken) {
      const id = removed.item.id;
      try {
        await api(`/api/v1/cases/${id}/actions`, {
          method: "POST",
          body: { action, ...(voidReason ? { void_reason: voidReason } : {}), ...(location ? { location } : {}) },
        });
        toast(t(action === "file" ? "review.confirmed" : "review.rejected", { id }));
        this.placed.delete(id);
      } catch (error) {
        toast(`${id}: ${error.message}`);
        if (error.status !== 409) this.restore(removed);  // a 409: someone else decided first
      }
    }
  }

  /** The case's full record and evidence as object URLs, fetched once. */
  detail(item) {
    if (!this.details.has(item.id)) {
      this.details.set(item.id, api(`/api/v1/cases/${item.id}`).then(async (full) => ({
        full,
        frame: seesPictures() && full.evidence_urls[0] ? await imageUrl(full.evidence_urls[0]) : null,
        crop: seesPictures() && full.crop_urls[0] ? await imageUrl(full.crop_urls[0]) : null,
      })));
    }
    return this.details.get(item.id);
  }

  /** Frees a decided case's evidence (a shift reviews thousands). */
  forget(caseId) {
    const detail = this.details.get(caseId);
    this.details.delete(caseId);
    detail?.then(({ full }) => [...full.evidence_urls, ...full.crop_urls].forEach(releaseImage), () => {});
  }

  row(item) {
    return h("li", {
      dataset: { caseId: item.id },
      onclick: () => { this.current = this.items.findIndex((i) => i.id === item.id); this.show(); },
    }, h("input", {
      type: "checkbox", checked: this.selected.has(item.id), "aria-label": `select ${item.id}`,
      onclick: (event) => { event.stopPropagation(); this.toggle(item.id); },
      hidden: !mayDecide(),
    }), h("div", {}, h("div", {}, `#${item.id} ${item.label} · ${t(`category.${item.category}`)}`),
      h("div", { class: "meta" }, `${item.camera_id ?? item.source} · ${when(item.opened_at)} · ${item.score.toFixed(2)}`)));
  }

  /** The whole page: only when the list itself changes (loaded, or an item arrived). */
  render() {
    this.title = h("h1", {});
    fill(this.root, this.title);
    this.list = null;
    if (!this.items.length) {
      this.show();
      return;
    }
    this.list = h("ol", { id: "queue", "aria-label": t("review.title") }, this.items.map((item) => this.row(item)));
    this.bulkConfirm = h("button", { class: "plain", onclick: () => this.decide([...this.selected], "file") });
    this.bulkReject = h("button", { class: "plain",
                                    onclick: () => this.decide([...this.selected], "void", "false_positive") });
    this.detailBox = h("section", { class: "detail", id: "review-detail" });
    this.root.append(h("div", { class: "queue" },
      h("div", {}, this.list, mayDecide() && h("div", { class: "actions" }, this.bulkConfirm, this.bulkReject)),
      this.detailBox));
    this.show();
  }

  updateBulk() {
    if (!this.bulkConfirm) return;
    this.bulkConfirm.textContent = `${t("review.bulk_confirm")} (${this.selected.size})`;
    this.bulkReject.textContent = t("review.bulk_reject");
    this.bulkConfirm.disabled = this.bulkReject.disabled = !this.selected.size;
  }

  /** The current item: marks it in the list and shows its evidence; no list redraw. */
  show() {
    this.title.textContent = `${t("review.title")} (${this.total})`;
    if (!this.items.length) {
      if (this.list) this.render();
      else if (!this.root.querySelector(".empty")) this.root.append(h("div", { class: "empty" }, t("review.empty")));
      return;
    }
    this.list.querySelector("li.current")?.classList.remove("current");
    const row = this.list.children[this.current];
    row?.classList.add("current");
    row?.scrollIntoView({ block: "nearest" });
    this.updateBulk();
    this.renderDetail(this.items[this.current]);
    for (let ahead = 1; ahead <= PREFETCH; ahead++) {
      const next = this.items[this.current + ahead];
      if (next) this.detail(next);
    }
    this.more();
  }

  renderDetail(item, tries = 0) {
    const detail = this.detailBox;
    detail.dataset.caseId = item.id;
    const frame = h("img", { class: "frame", alt: "evidence" });
    const crop = h("img", { class: "crop", alt: "crop" });
    fill(detail,
      h("div", { class: "evidence" }, frame, crop),
      h("dl", { class: "facts" },
        h("dt", {}, t("fact.category")), h("dd", {}, `${t(`category.${item.category}`)} (${item.code})`),
        h("dt", {}, t("fact.camera")), h("dd", {}, item.camera_id ? `${item.node_id} / ${item.camera_id}` : item.source),
        h("dt", {}, t("fact.zone")), h("dd", {}, item.zone_id ?? "—"),
        h("dt", {}, t("fact.dwell")), h("dd", {}, duration(item.dwell_seconds)),
        h("dt", {}, t("fact.score")), h("dd", {}, item.score.toFixed(2)),
        item.description && h("dt", {}, t("fact.description")), item.description && h("dd", {}, item.description),
        item.address && h("dt", {}, t("fact.address")), item.address && h("dd", {}, item.address),
        h("dt", {}, t("fact.opened")), h("dd", {}, when(item.opened_at))),
      mayDecide() && item.lat == null && h("fieldset", { class: "place", id: "place" },
        h("legend", {}, t("review.unplaced")),
        ["lat", "lon"].map((axis) => h("input", {
          id: `place-${axis}`, type: "number", step: "any", min: axis === "lat" ? -90 : -180,
          max: axis === "lat" ? 90 : 180, placeholder: axis, "aria-label": axis,
          value: this.placed.get(item.id)?.[axis] ?? "",
          oninput: (event) => {
            this.placed.set(item.id, { ...this.placed.get(item.id), [axis]: event.target.value.trim() });
          },
        })),
        h("p", { class: "meta" }, t("review.place_hint"))),
      mayDecide() ? h("div", { class: "actions" },
        h("button", { class: "primary", id: "confirm", onclick: () => this.confirm(item) },
          t("review.confirm"), " ", h("kbd", {}, "C")),
        REASONS.map((reason, index) => h("button", {
          class: "danger", id: `reject-${reason}`, onclick: () => this.decide([item.id], "void", reason),
        }, t(`review.${reason}`), " ", h("kbd", {}, "FDN"[index])))) :
        h("p", { class: "meta", id: "read-only" }, t("review.read_only")),
      h("p", { class: "meta" }, `${t("review.keys")}: J/↓ ${t("review.next")}, K/↑ ${t("review.previous")}, X ☑`));
    this.detail(item).then(({ frame: frameUrl, crop: cropUrl }) => {
      if (detail.dataset.caseId !== String(item.id)) return;  // the operator has moved on
      if (!frameUrl && seesPictures() && item.source === "camera" && tries < EVIDENCE_TRIES) {
        // a case is announced once its event is stored; its images, a moment later: read it again shortly
        this.details.delete(item.id);
        setTimeout(() => { if (detail.dataset.caseId === String(item.id)) this.renderDetail(item, tries + 1); }, 1000);
        return;
      }
      if (frameUrl) frame.src = frameUrl; else frame.remove();
      if (cropUrl) crop.src = cropUrl; else crop.remove();
    }).catch((error) => toast(`${item.id}: ${error.message}`));
  }
}
