// A tiny element builder: h("button", {class: "primary", onclick}, "Confirm").

export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  return fill(node, ...children);
}

/** `node`'s children replaced by `children` as `h` takes them: nested lists flattened, and what a condition left out
 * (`false`, null, undefined) skipped; the DOM's own replaceChildren writes it out as text ("false"). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((child) => child !== undefined && child !== null && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

export function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 2500);
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const hours = Math.floor(s / 3600), minutes = Math.floor((s % 3600) / 60);
  return hours ? `${hours} h ${minutes} min` : minutes ? `${minutes} min ${s % 60} s` : `${s} s`;
}
