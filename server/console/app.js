// The console's shell: login with an API token, the header, a hash router, and the live feed every page listens to.

import { api, liveFeed, session } from "./api.js";
import { AssessmentPage } from "./assessment.js";
import { Board, CaseBoard, CasePage } from "./cases.js";
import { CityView } from "./city.js";
import { fill, h } from "./dom.js";
import { language, setLanguage, t, translate } from "./i18n.js";
import { ReviewQueue } from "./review.js";
import { ZoneEditor } from "./zones.js";

const view = document.getElementById("view");
let page = null;
let stopLive = null;

function loginPage(problem) {
  page?.unmount();  // its keys, timers and pictures go with it: the review queue's keys would act with no token
  page = null;
  document.getElementById("top").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = h("form", { class: "login", onsubmit: async (event) => {
    event.preventDefault();
    session.token = input.value.trim();
    try {
      session.caller = await api("/api/v1/me");
      start();
    } catch {
      session.token = null;
      loginPage(t("login.bad"));
    }
  } }, h("h1", {}, t("login.title")), h("label", { for: "token" }, t("login.token")), input,
  problem && h("p", { class: "error", role: "alert" }, problem), h("p", { class: "meta" }, t("login.hint")),
  h("button", { class: "primary", type: "submit" }, t("login.submit")));
  fill(view, form);
  input.focus();
}

function route() {
  page?.unmount();
  const [path, query = ""] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("header nav a").forEach((link) => {
    link.classList.toggle("active", link.getAttribute("href").slice(1).split("/")[1] === parts[0]);
  });
  // each page draws into a box of its own: a page left while it was still loading (or its timer still running)
  // draws into a box no longer shown, never over the page the operator moved to
  const root = h("div", { class: "page" });
  fill(view, root);
  if (parts[0] === "cases") page = new CaseBoard(root, params);
  else if (parts[0] === "case") page = new CasePage(root, parts[1]);
  else if (parts[0] === "board") page = new Board(root);
  else if (parts[0] === "city") page = new CityView(root);
  else if (parts[0] === "assessment") page = new AssessmentPage(root, params);
  else if (parts[0] === "zones") page = new ZoneEditor(root, params);
  else page = new ReviewQueue(root);
  page.mount().catch((error) => fill(root, h("p", { class: "error" }, error.message)));
}

/** The pages a role has a use for (the server refuses the rest): zones are edited by operators; field staff and
 * integrators review nothing (supervisors watch the queue, read only); field staff get no assessment. Missing
 * here: every page. */
const PAGES = {
  field_staff: ["cases", "case", "city", "board"],
  integrator: ["cases", "case", "city", "assessment", "board"],
  supervisor: ["review", "cases", "case", "city", "assessment", "board"],
};

function home() {
  const caller = session.caller;
  if (caller.role === "field_staff" && caller.unit) return `#/cases?${new URLSearchParams({ unit_id: caller.unit })}`;
  return (PAGES[caller.role] ?? ["review"]).includes("review") ? "#/review" : "#/cases";
}

function start() {
  const header = document.getElementById("top");
  header.hidden = false;
  const pages = PAGES[session.caller.role];
  header.querySelectorAll("nav a").forEach((link) => {
    link.hidden = Boolean(pages) && !pages.includes(link.getAttribute("href").slice(2));
  });
  document.getElementById("who").textContent = `${session.caller.name} (${session.caller.role})`;
  translate(header);
  stopLive?.();
  stopLive = liveFeed((message) => page?.changed(message),
    (connected) => document.getElementById("live-state").classList.toggle("on", connected),
    () => (page?.resync ? page.resync() : route()),  // a page that can read afresh keeps what is being typed
    () => { session.token = null; session.caller = null; loginPage(t("login.revoked")); });
  const [asked] = location.hash.slice(2).split(/[/?]/);  // not `page`: the live stream's callback above reads that
  if (!location.hash || (pages && !pages.includes(asked || "review"))) location.hash = home();
  route();
}

window.addEventListener("hashchange", () => session.caller && route());
document.getElementById("logout").addEventListener("click", () => {
  stopLive?.();
  session.token = null;
  session.caller = null;
  loginPage();
});
document.getElementById("language").addEventListener("click", () => {
  setLanguage(language === "zh" ? "en" : "zh");
  document.getElementById("language").textContent = language === "zh" ? "English" : "中文";
  translate();
  session.caller ? route() : loginPage();
});

setLanguage(language);
document.getElementById("language").textContent = language === "zh" ? "English" : "中文";
if (session.token) {
  api("/api/v1/me").then((caller) => { session.caller = caller; start(); }).catch(() => loginPage());
} else {
  loginPage();
}
