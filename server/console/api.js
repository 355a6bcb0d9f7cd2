// The API as the console uses it: every call carries the operator's token; the live feed is read with fetch so the
// token travels in a header, never in a URL.

const TOKEN_KEY = "gridwatch.token";

export class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) { value ? sessionStorage.setItem(TOKEN_KEY, value) : sessionStorage.removeItem(TOKEN_KEY); },
  caller: null,
};

/** Calls the API with the session's token: `body` goes as JSON, `file` (a File or Blob) as itself, typed as it is. */
export async function api(path, options) {
  return (await apiAnswer(path, options)).data;
}

/** As `api`, with the answer's headers: `{ data, headers }` (e.g. the range an assessment used). */
export async function apiAnswer(path, { method = "GET", body, file, headers = {} } = {}) {
  const type = file ? { "Content-Type": file.type || "application/octet-stream" }
    : body ? { "Content-Type": "application/json" } : {};
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${session.token}`, ...type, ...headers },
    body: file ?? (body ? JSON.stringify(body) : undefined),
  });
  const answered = response.headers.get("content-type") || "";
  const data = answered.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) {
    const detail = Array.isArray(data?.detail) ? data.detail.map((d) => d.msg || d).join("; ") : data?.detail;
    throw new ApiError(response.status, detail || `HTTP ${response.status}`, data);
  }
  return { data, headers: response.headers };
}

/** A fresh Idempotency-Key (crypto.randomUUID needs https, which a console on the street office's LAN may lack). */
export function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Roles that see pictures (evidence, snapshots, case photos: people and number plates are in them); the server
 * refuses the others, so the console does not ask. Field staff see those of their own unit's cases only. */
export const PICTURE_ROLES = new Set(["operator", "field_staff", "supervisor", "admin"]);

/** Whether the caller may see pictures at all. */
export function seesPictures() { return PICTURE_ROLES.has(session.caller?.role); }

/** Roles that run the city's cameras: decide detections, edit zones, send nodes commands, export training data. */
const OPERATORS = new Set(["operator", "admin"]);

/** Whether the caller may do what only operators may (the server refuses the others). */
export function operates() { return OPERATORS.has(session.caller?.role); }

const imageCache = new Map();

/** An evidence image as an object URL (images need the token too). */
export async function imageUrl(path) {
  if (!imageCache.has(path)) {
    const fetched = api(path).then((blob) => URL.createObjectURL(blob));
    imageCache.set(path, fetched);
    // a refusal or a failure is not kept: the picture is asked for again next time (a case reassigned to the
    // caller's unit, a network blip)
    fetched.catch(() => { if (imageCache.get(path) === fetched) imageCache.delete(path); });
  }
  return imageCache.get(path);
}

/** Frees an image fetched by `imageUrl` (a long review session would otherwise keep every one in memory). */
export function releaseImage(path) {
  const url = imageCache.get(path);
  imageCache.delete(path);
  url?.then((objectUrl) => URL.revokeObjectURL(objectUrl), () => {});
}

/** Calls `onCase(message)` for every case change; `onState(connected)` as the link comes and goes; `onResync()`
 * when changes were missed that the server cannot send again (it restarted, another worker answers, too long
 * ago, or this console fell behind); a reconnect otherwise gets what it missed, from the last id it saw;
 * `onDenied(status)` once, when the token is refused (revoked, or the role lost): then the feed stops, since every
 * refused try counts against the address's login limit and would soon lock out every console behind it. */
export function liveFeed(onCase, onState, onResync, onDenied) {
  let stopped = false;
  let controller = null;
  async function run() {
    let wait = 2000;
    let last = null;  // the id of the last frame seen: the server sends what came since (or says to read afresh)
    let failed = false;  // no stream yet, and a try failed: what the page read may have changed meanwhile
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch(`/api/v1/live${last ? `?${new URLSearchParams({ after: last })}` : ""}`, {
          headers: { Authorization: `Bearer ${session.token}` }, signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          stopped = true;
          onState(false);
          onDenied?.(response.status);
          return;
        }
        if (!response.ok) throw new Error(`live: HTTP ${response.status}`);
        onState(true);
        wait = 2000;
        if (failed && !last) onResync();  // never connected before: nothing to replay from
        failed = false;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(frame)?.[1];
            const data = /^data: (.*)$/m.exec(frame)?.[1];
            last = /^id: (.*)$/m.exec(frame)?.[1] ?? last;
            if (event === "case" && data) onCase(JSON.parse(data));
            if (event === "resync") onResync();
          }
        }
        continue;  // the stream's normal end (its time is up, or after a resync): straight back, from `last`
      } catch (error) {
        if (stopped) return;
        failed = true;
        wait = Math.min(wait * 2, 30000);  // a server away: back off, up to 30 s
      }
      onState(false);
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
  run();
  return () => { stopped = true; controller?.abort(); };
}
