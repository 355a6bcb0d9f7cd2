// The city on a plan: grid polygons drawn from their GeoJSON (no map tiles: they are unreachable offline), each
// camera where it stands, coloured by its node's state, with its open cases; a click shows its latest snapshot.

import { api, operates } from "./api.js";
import { fill, h, toast, when } from "./dom.js";
import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function rings(geometry) {
  return geometry.type === "Polygon" ? [geometry.coordinates[0]]
    : geometry.type === "MultiPolygon" ? geometry.coordinates.map((polygon) => polygon[0]) : [];
}

export class CityView {
  constructor(root) { this.root = root; }

  async mount() {
    const [grids, cameras] = await Promise.all([api("/api/v1/grids"), api("/api/v1/cameras")]);
    const points = grids.features.flatMap((f) => rings(f.geometry).flat())
      .concat(cameras.filter((c) => c.lon !== null).map((c) => [c.lon, c.lat]));
    // the panel of the camera picked stays through the plan's redraws (a live change anywhere redraws it)
    const side = this.side ??= h("section", { class: "detail", id: "camera-detail" }, h("p", { class: "meta" }, t("city.pick")));
    const picked = this.picked && cameras.find((c) => `${c.node_id}/${c.camera_id}` === this.picked);
    if (picked) side.querySelector(".facts")?.replaceWith(this.facts(picked));
    if (!points.length) {
      fill(this.root, h("h1", {}, t("city.title")), h("div", { class: "empty" }, t("city.empty")));
      return;
    }
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const scaleX = Math.cos(((minY + maxY) / 2) * Math.PI / 180);  // metres east per degree shrink with latitude
    const width = Math.max(1e-6, (maxX - minX) * scaleX), height = Math.max(1e-6, maxY - minY);
    const pad = 0.06 * Math.max(width, height);
    const project = ([x, y]) => [((x - minX) * scaleX) + pad, (maxY - y) + pad];
    const plan = svg("svg", { viewBox: `0 0 ${width + 2 * pad} ${height + 2 * pad}`, id: "plan",
                              preserveAspectRatio: "xMidYMid meet", class: "plan" });
    const stroke = Math.max(width, height) / 400;
    for (const feature of grids.features) {
      for (const ring of rings(feature.geometry)) {
        const polygon = svg("polygon", { points: ring.map((p) => project(p).join(",")).join(" "), class: "grid",
                                         "stroke-width": stroke });
        polygon.append(svg("title", {}, `${feature.properties.grid_id} ${feature.properties.name ?? ""}`));
        plan.append(polygon);
      }
      const centre = project(rings(feature.geometry)[0].reduce((a, p) => [a[0] + p[0], a[1] + p[1]], [0, 0])
        .map((v) => v / rings(feature.geometry)[0].length));
      plan.append(svg("text", { x: centre[0], y: centre[1], class: "grid-label", "font-size": stroke * 14,
                                "text-anchor": "middle" }, feature.properties.grid_id));
    }
    for (const camera of cameras.filter((c) => c.lon !== null)) {
      const [x, y] = project([camera.lon, camera.lat]);
      const dot = svg("circle", { cx: x, cy: y, r: stroke * (camera.open_cases ? 7 : 5),
                                  class: `camera ${camera.node_state}${camera.open_cases ? " busy" : ""}`,
                                  "data-camera": `${camera.node_id}/${camera.camera_id}`,
                                  onclick: () => this.show(side, camera) });
      dot.append(svg("title", {}, `${camera.node_id}/${camera.camera_id}: ${camera.open_cases}`));
      plan.append(dot);
    }
    fill(this.root, h("h1", {}, t("city.title")), h("div", { class: "two" }, h("section", { class: "detail" }, plan), side));
  }

  facts(camera) {
    return h("dl", { class: "facts" },
      h("dt", {}, t("city.node")), h("dd", {}, t(`node.${camera.node_state}`)),
      h("dt", {}, t("city.open")), h("dd", {}, camera.open_cases),
      h("dt", {}, t("city.last")), h("dd", {}, when(camera.last_event_at)),
      h("dt", {}, "fps"), h("dd", {}, camera.fps ?? "—"));
  }

  async show(side, camera) {
    this.picked = `${camera.node_id}/${camera.camera_id}`;
    clearTimeout(this.snapshotTimer);
    const slot = h("div", { id: "camera-snapshot" });
    fill(side, h("h2", {}, `${camera.node_id} / ${camera.camera_id}`), this.facts(camera),
    h("div", { class: "actions" },
      h("a", { href: `#/cases?${new URLSearchParams({ node_id: camera.node_id, camera_id: camera.camera_id })}` },
        t("city.cases")),
      operates() && h("button", { class: "plain", id: "take-snapshot", onclick: () => this.refresh(camera, slot) },
        t("city.snapshot"))),  // commands are the operators': the server refuses the others
    slot);
    await this.snapshot(camera, slot);
  }

  /** The camera's latest snapshot into `slot`; whether there was one. The picture before it is freed. */
  async snapshot(camera, slot) {
    let blob;
    try {
      blob = await api(`/api/v1/nodes/${camera.node_id}/cameras/${camera.camera_id}/snapshot`);
    } catch {
      if (!slot.querySelector("img")) fill(slot, h("p", { class: "meta" }, t("city.no_snapshot")));
      return false;
    }
    this.freePicture();
    this.pictureUrl = URL.createObjectURL(blob);
    fill(slot, h("img", { class: "snapshot", alt: "snapshot", src: this.pictureUrl }));
    return true;
  }

  /** Asks the node for a snapshot, then shows it when it comes (looked for every 2 s, a few times). */
  async refresh(camera, slot) {
    try {
      const before = await api(`/api/v1/nodes/${camera.node_id}/commands`, { method: "POST",
        body: { action: "snapshot", camera_id: camera.camera_id } });
      toast(t("city.asked"));
      const look = (tries, answered = false) => {
        this.snapshotTimer = setTimeout(async () => {
          const sent = await api(`/api/v1/nodes/${camera.node_id}/commands/${before.request_id}`).catch(() => null);
          if (sent?.response?.ok === false) toast(sent.response.detail ?? t("city.no_snapshot"));
          else if (sent?.response?.ok) {
            await this.snapshot(camera, slot);
            if (!answered) look(1, true);  // its picture may be stored a moment after the answer: once more
          } else if (tries > 1) look(tries - 1);
        }, 2000);
      };
      look(5);
    } catch (error) { toast(error.message); }
  }

  freePicture() { if (this.pictureUrl) URL.revokeObjectURL(this.pictureUrl); this.pictureUrl = null; }

  /** Redraws a second after the last change, and at least every two seconds while changes keep coming. */
  changed() {
    clearTimeout(this.timer);
    this.burst ??= Date.now();
    this.timer = setTimeout(() => { this.burst = null; this.mount(); },
      Math.max(0, Math.min(1000, this.burst + 2000 - Date.now())));
  }

  unmount() { clearTimeout(this.timer); clearTimeout(this.snapshotTimer); this.freePicture(); }
}
