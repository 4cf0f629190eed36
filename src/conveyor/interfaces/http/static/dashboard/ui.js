// What every view of the dashboard shares: the API client and its token, the header's run
// picker and live badge, and small pieces (chips, panels, errors). DOM is built with h() only.
import { fmtDur, h } from "./charts.js";

export const BASE = "/dashboard";
export const main = document.getElementById("main");
const live = document.getElementById("live");
const picker = document.getElementById("run-picker");

// -- the token: from #token=... once, then kept for this tab in sessionStorage ----------------
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("conveyor-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}

export class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("conveyor-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${BASE}/api${path}`, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) { askToken(); throw new HttpError(401, body.detail || "unauthorized"); }
  if (!res.ok) throw new HttpError(res.status, body.detail || res.statusText);
  return body;
}

function askToken() {
  if (document.getElementById("token-form")) return;
  const input = h("input", { type: "password", placeholder: "bearer token", id: "token-input",
    autocomplete: "off" });
  const form = h("form", { id: "token-form", class: "panel token" },
    h("h2", {}, "This dashboard needs a token"),
    h("p", { class: "muted" }, "It was started with --token. Enter it once; it is kept for this tab only."),
    input, h("button", { class: "btn primary", type: "submit" }, "Use token"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("conveyor-token", input.value);
    location.reload();
  });
  main.replaceChildren(form);
}

// -- small pieces -----------------------------------------------------------------------------
export const STATE_CLASS = { running: "run", completed: "ok", completed_with_errors: "warn", failed: "bad",
  interrupted: "skip", firing: "bad", resolved: "ok", done: "ok", dead: "bad", cached: "cached",
  skipped: "skip", ready: "skip", pending: "skip" };

export function chip(state) {
  return h("span", { class: `chip ${STATE_CLASS[state] || ""}` }, state.replaceAll("_", " "));
}

export function ago(t, now) {
  if (!t) return "–";
  return `${fmtDur(Math.max(0, (now || Date.now() / 1000) - t))} ago`;
}

export function panel(title, extra, ...body) {
  return h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, title), extra), ...body);
}

export function showError(where, err) {
  where.replaceChildren(h("div", { class: "alert bad" }, String(err.message || err)));
}

/** Mark the header's tab of this view (``runs`` or ``models``). */
export function setNav(which) {
  for (const a of document.querySelectorAll(".tabs a")) {
    a.classList.toggle("on", a.dataset.nav === which);
  }
}

export function setLive(on, text) {
  live.className = on ? "live on" : "live";
  live.textContent = text;
}

// -- polling with render-on-change ------------------------------------------------------------
const last = new Map();
export function changed(key, data) {
  const json = JSON.stringify(data);
  if (last.get(key) === json) return false;
  last.set(key, json);
  return true;
}

/** Forget what was drawn under ``key``: the next changed(key, ...) is true. */
export function forget(key) {
  last.delete(key);
}

export async function fillPicker(current) {
  const { runs } = await api("/runs?limit=50");
  if (!changed("picker", runs.map((r) => [r.id, r.state]))) return runs;
  picker.replaceChildren(h("option", { value: "" }, "all runs"),
    ...runs.map((r) => h("option", { value: r.id, selected: r.id === current },
      `${r.pipeline} · ${r.id} · ${r.state.replaceAll("_", " ")}`)));
  return runs;
}
picker.addEventListener("change", () => {
  location.href = picker.value ? `${BASE}/runs/${encodeURIComponent(picker.value)}` : BASE;
});

