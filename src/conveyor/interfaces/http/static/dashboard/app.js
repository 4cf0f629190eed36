// The Conveyor dashboard: runs list and run page over /dashboard/api (the model registry's
// views are in models.js). Polls every 2 s while a run is running. DOM is built with
// createElement/textContent only (see charts.js: h()).
import { PALETTE, fmtClock, fmtDur, fmtNum, h, latencyBars, lineChart, progressBar } from "./charts.js";
import { modelPage, modelsPage, versionPage } from "./models.js";
import { BASE, api, ago, changed, chip, fillPicker, forget, main, panel, setLive, setNav, showError } from "./ui.js";

const POLL_MS = 2000;
const PAGE = 25;
let timer = null;

function finished(counts) {
  return ["done", "cached", "dead", "skipped"].reduce((a, k) => a + (counts[k] || 0), 0);
}

function total(counts) {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

// -- the runs list ----------------------------------------------------------------------------
async function runsPage() {
  setNav("runs");
  document.getElementById("crumbs").replaceChildren(h("span", {}, "runs"));
  const table = h("div");
  main.replaceChildren(panel("Runs", h("span", { class: "muted" }, "newest first"), table));
  const tick = async () => {
    try {
      const runs = await fillPicker(null);
      const now = Date.now() / 1000;
      const running = runs.some((r) => r.state === "running");
      setLive(running, running ? "live" : "idle");
      if (!runs.length) {
        table.replaceChildren(h("p", { class: "muted pad" }, "No runs yet. Start one with conveyor run PIPELINE.py --input …"));
      } else {
        table.replaceChildren(h("table", { class: "grid-table" },
          h("thead", {}, h("tr", {}, ...["state", "run", "pipeline", "source", "started", "duration",
            "progress", "units", "dead"].map((c) => h("th", {}, c)))),
          h("tbody", {}, ...runs.map((r) => {
            const t = total(r.counts);
            return h("tr", {},
              h("td", {}, chip(r.state)),
              h("td", { class: "mono" }, h("a", { href: `${BASE}/runs/${encodeURIComponent(r.id)}` }, r.id)),
              h("td", {}, r.pipeline),
              h("td", { class: "mono ellipsis", title: r.source }, r.source),
              h("td", { title: new Date(r.created_at * 1000).toISOString() }, ago(r.created_at, now)),
              h("td", {}, fmtDur((r.finished_at || now) - r.created_at)),
              h("td", { class: "wide" }, progressBar(r.counts, t)),
              h("td", { class: "num" }, `${fmtNum(finished(r.counts))} / ${fmtNum(t)}`),
              h("td", { class: `num ${r.counts.dead ? "bad-text" : "muted"}` }, fmtNum(r.counts.dead || 0)));
          }))));
      }
    } catch (err) { if (err.status !== 401) showError(table, err); return; }
    timer = setTimeout(tick, POLL_MS * 2);
  };
  await tick();
}

// -- the run page -----------------------------------------------------------------------------
const view = { openGroup: null, openUnit: null, offset: 0, notice: null };

async function runPage(runId) {
  setNav("runs");
  const slots = {};
  for (const k of ["head", "kpis", "steps", "charts", "errors", "dead", "alarms", "unit"]) {
    slots[k] = h("div", { id: `slot-${k}` });
  }
  main.replaceChildren(slots.head, slots.kpis,
    h("div", { class: "cols" }, h("div", { class: "col-main" }, slots.steps, slots.charts),
      h("div", { class: "col-side" }, slots.alarms)),
    slots.errors, slots.unit, slots.dead);
  const tick = async () => {
    let run;
    try {
      await fillPicker(runId);
      run = await api(`/runs/${encodeURIComponent(runId)}`);
      const [thr, errs, dead, alarms] = await Promise.all([
        api(`/runs/${encodeURIComponent(run.id)}/throughput?buckets=60`),
        api(`/runs/${encodeURIComponent(run.id)}/errors?limit=50&samples=3`),
        api(`/runs/${encodeURIComponent(run.id)}/dead?offset=${view.offset}&limit=${PAGE}`),
        api(`/runs/${encodeURIComponent(run.id)}/alarms`)]);
      document.getElementById("crumbs").replaceChildren(
        h("a", { href: BASE }, "runs"), h("span", { class: "sep" }, "/"), h("span", { class: "mono" }, run.id));
      renderHead(slots.head, run);
      renderKpis(slots.kpis, run, thr);
      if (changed("steps", run.steps_stats)) renderSteps(slots.steps, run);
      renderCharts(slots.charts, run, thr);
      const mode = [run.state, run.redrive && run.redrive.state];
      if (changed("errors", [errs, view.openGroup, mode])) renderErrors(slots.errors, run, errs.groups);
      if (changed("dead", [dead, view.notice, mode])) {
        renderDead(slots.dead, run, dead);
        if (view.openUnit !== null) openUnit(view.openUnit, false);
      }
      if (changed("alarms", alarms)) renderAlarms(slots.alarms, alarms.alarms, run.now);
    } catch (err) {
      if (err.status === 401) return;
      showError(slots.head, err);
      if (err.status === 404) return;
    }
    const moving = run && (run.state === "running" || (run.redrive && run.redrive.state === "running"));
    setLive(moving, moving ? "live" : "finished");
    if (moving) timer = setTimeout(tick, POLL_MS);
  };
  view.poll = () => { clearTimeout(timer); tick(); };
  await tick();
}

function renderHead(el, run) {
  const t = total(run.counts), f = finished(run.counts);
  const pct = t ? Math.floor((100 * f) / t) : 0;
  const job = run.redrive;
  el.replaceChildren(h("section", { class: "run-head" },
    h("div", { class: "title" },
      h("h1", {}, run.pipeline), chip(run.state),
      h("span", { class: "mono muted" }, run.id)),
    h("div", { class: "meta" },
      h("span", {}, "source ", h("b", { class: "mono" }, run.source)),
      h("span", {}, "started ", h("b", {}, fmtClock(run.created_at))),
      h("span", {}, "elapsed ", h("b", {}, fmtDur((run.finished_at || run.now) - run.created_at))),
      run.executor ? h("span", {}, "executor ", h("b", {}, run.executor)) : null),
    h("div", { class: "overall" }, progressBar(run.counts, t),
      h("span", { class: "pct", id: "overall-progress" }, `${pct}% · ${fmtNum(f)} / ${fmtNum(t)} units`)),
    run.message ? h("div", { class: "alert warn" }, run.message) : null,
    job ? h("div", { class: `alert ${job.state === "failed" ? "bad" : job.state === "running" ? "run" : "ok"}`,
      id: "redrive-status" },
      job.state === "running" ? "Redrive running…" : `Redrive ${job.state}`,
      job.message ? `: ${job.message}` : "") : null));
}

function renderKpis(el, run, thr) {
  const c = run.counts;
  const recent = Object.values(thr.steps).map((s) => s.done.slice(-5).reduce((a, b) => a + b, 0));
  const rate = recent.reduce((a, b) => a + b, 0) / (5 * thr.width);
  const kpi = (label, value, cls = "") => h("div", { class: `kpi ${cls}` },
    h("div", { class: "kpi-v" }, value), h("div", { class: "kpi-l" }, label));
  el.replaceChildren(h("div", { class: "kpis" },
    kpi("units", fmtNum(total(c))),
    kpi("done", fmtNum((c.done || 0) + (c.cached || 0)), "ok"),
    kpi("in flight", fmtNum((c.running || 0) + (c.ready || 0) + (c.pending || 0)), "run"),
    kpi("dead", fmtNum(c.dead || 0), c.dead ? "bad" : ""),
    kpi("skipped", fmtNum(c.skipped || 0), "skip"),
    kpi(run.state === "running" ? "units/s now" : "units/s at end", fmtNum(rate))));
}

function renderSteps(el, run) {
  el.replaceChildren(panel("Steps", h("span", { class: "muted" }, "per-step progress and latency"),
    h("table", { class: "grid-table steps" },
      h("thead", {}, h("tr", {}, ...["step", "progress", "done", "dead", "skipped", "running",
        "p50", "p95", "units/s"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...run.steps_stats.map((st, i) => h("tr", { "data-step": st.step },
        h("td", {}, h("span", { class: "dot", style: { background: PALETTE[i % PALETTE.length] } }), st.step),
        h("td", { class: "wide" }, progressBar(st.counts, st.total)),
        h("td", { class: "num step-done" }, `${fmtNum((st.counts.done || 0) + (st.counts.cached || 0))} / ${fmtNum(st.total)}`),
        h("td", { class: `num ${st.counts.dead ? "bad-text" : "muted"}` }, fmtNum(st.counts.dead || 0)),
        h("td", { class: "num muted" }, fmtNum(st.counts.skipped || 0)),
        h("td", { class: "num" }, fmtNum(st.counts.running || 0)),
        h("td", { class: "num" }, fmtDur(st.p50)),
        h("td", { class: "num" }, fmtDur(st.p95)),
        h("td", { class: "num" }, fmtNum(st.rate))))))));
}

function renderCharts(el, run, thr) {
  const series = Object.entries(thr.steps).map(([step, v], i) => ({
    name: step, color: PALETTE[run.steps.indexOf(step) >= 0 ? run.steps.indexOf(step) % PALETTE.length : i],
    values: v.done.map((n) => n / thr.width) }));
  const deadLine = Object.values(thr.steps).reduce((acc, v) => acc.map((a, i) => a + v.dead[i] / thr.width),
    new Array(Object.values(thr.steps)[0]?.dead.length || 0).fill(0));
  if (deadLine.some((v) => v > 0)) series.push({ name: "dead (all steps)", color: "#f85149", values: deadLine, dash: true });
  const legend = h("div", { class: "legend" }, ...series.map((l) =>
    h("span", {}, h("i", { style: { background: l.color } }), l.name)));
  el.replaceChildren(h("div", { class: "charts" },
    panel("Throughput", h("span", { class: "muted" }, `units/s per step · ${fmtDur(thr.width)} buckets`),
      lineChart({ series, start: thr.start, width: thr.width }), legend),
    panel("Latency", h("span", { class: "muted legend" }, h("span", {}, h("i", { class: "p50" }), "p50"),
      h("span", {}, h("i", { class: "p95" }), "p95")),
    latencyBars(run.steps_stats.map((st) => ({ step: st.step, p50: st.p50, p95: st.p95 }))))));
}

function redriveButton(run, label, body, title) {
  const btn = h("button", { class: "btn", title, disabled: run.state === "running" || !run.redrivable });
  btn.textContent = label;
  btn.addEventListener("click", async (e) => {
    e.stopPropagation();
    btn.disabled = true;
    try {
      await api(`/runs/${encodeURIComponent(run.id)}/redrive`, { method: "POST", body: JSON.stringify(body) });
      view.notice = null;
    } catch (err) {
      view.notice = err.message;
    }
    view.poll();
  });
  return btn;
}

function renderErrors(el, run, groups) {
  if (!groups.length) {
    el.replaceChildren(panel("Errors", h("span", { class: "muted" }, "grouped by signature"),
      h("p", { class: "muted pad" }, "No dead units.")));
    return;
  }
  const list = h("div", { class: "groups" }, ...groups.map((g) => {
    const open = view.openGroup === g.signature;
    const row = h("div", { class: `group ${open ? "open" : ""}`, "data-signature": g.signature },
      h("div", { class: "group-head", role: "button", tabindex: "0" },
        h("span", { class: "caret" }, open ? "▾" : "▸"),
        h("span", { class: "count" }, fmtNum(g.count)),
        h("span", { class: "step-tag" }, g.step),
        h("span", { class: "etype" }, g.error_type),
        h("span", { class: "msg mono" }, g.message),
        h("span", { class: "muted when" }, `last ${fmtClock(g.last_seen)}`),
        redriveButton(run, "Redrive group", { step: g.step, error: g.signature },
          "Re-queue every dead unit of this group with the pipeline file's current code")));
    row.firstChild.addEventListener("click", () => {
      view.openGroup = open ? null : g.signature;
      forget("errors");
      view.poll();
    });
    if (open) {
      const units = h("div", { class: "group-units" }, h("p", { class: "muted" }, "loading…"));
      row.append(units);
      api(`/runs/${encodeURIComponent(run.id)}/dead?limit=10&error=${encodeURIComponent(g.signature)}`)
        .then((page) => units.replaceChildren(h("div", { class: "muted small" }, "dead units (click for traceback and input)"),
          ...page.units.map((u) => h("a", { class: "unit-link mono", href: "#", "data-unit": u.unit,
            onclick: (e) => { e.preventDefault(); openUnit(u.unit); } }, `#${u.unit} · ${u.item}`)),
          page.more ? h("span", { class: "muted small" }, "…more in the dead-letter queue below") : null))
        .catch((err) => showError(units, err));
    }
    return row;
  }));
  el.replaceChildren(panel("Errors", h("span", { class: "muted" }, `${groups.length} signature${groups.length > 1 ? "s" : ""} · click to drill down`), list));
}

async function openUnit(unitId, scroll = true) {
  view.openUnit = unitId;
  const el = document.getElementById("slot-unit");
  try {
    const u = await api(`/units/${unitId}`);
    const input = u.input || {};
    const inputBody = input.error ? h("p", { class: "bad-text" }, input.error)
      : input.fields ? h("table", { class: "kv" }, ...Object.entries(input.fields).map(([k, v]) =>
        h("tr", {}, h("th", {}, k), h("td", { class: "mono" }, v))))
        : h("div", {}, h("div", { class: "mono muted" }, input.path || ""), h("pre", { class: "pre" }, input.text || ""));
    el.replaceChildren(h("section", { class: "panel unit", id: "unit-detail" },
      h("div", { class: "panel-head" },
        h("h2", {}, `Unit #${u.unit}`), chip(u.state),
        h("span", { class: "muted" }, `step ${u.step} · item `, h("b", { class: "mono" }, u.item),
          ` · ${u.attempts} attempt${u.attempts === 1 ? "" : "s"}`),
        h("div", { class: "spacer" }),
        h("button", { class: "btn ghost", onclick: () => { el.replaceChildren(); view.openUnit = null; } }, "close")),
      u.error_type ? h("div", { class: "err-line" }, h("b", {}, u.error_type), ": ",
        h("span", { class: "mono", id: "unit-error-message" }, u.error_message || "")) : null,
      h("div", { class: "unit-cols" },
        h("div", {}, h("h3", {}, "Traceback"), h("pre", { class: "pre tb", id: "unit-traceback" }, u.traceback || "(none)")),
        h("div", {}, h("h3", {}, "Input"), inputBody,
          h("h3", {}, "Attempts"),
          h("table", { class: "grid-table small" }, h("thead", {}, h("tr", {}, ...["#", "error", "took", "decision"].map((c) => h("th", {}, c)))),
            h("tbody", {}, ...u.attempt_log.map((a) => h("tr", {}, h("td", {}, a.attempt),
              h("td", { class: "mono ellipsis", title: a.error_message || "" }, `${a.error_type || ""}: ${a.error_message || ""}`),
              h("td", { class: "num" }, fmtDur(a.duration)), h("td", { class: "muted" }, a.decision || "")))))))));
    if (scroll) el.scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (err) { showError(el, err); }
}

function renderDead(el, run, page) {
  const pager = h("span", { class: "pager" },
    h("button", { class: "btn ghost", disabled: page.offset === 0,
      onclick: () => { view.offset = Math.max(0, view.offset - PAGE); view.poll(); } }, "‹ prev"),
    h("span", { class: "muted" }, page.units.length ? `${fmtNum(page.offset + 1)}–${fmtNum(page.offset + page.units.length)}` : "0"),
    h("button", { class: "btn ghost", disabled: !page.more,
      onclick: () => { view.offset += PAGE; view.poll(); } }, "next ›"),
    page.units.length ? redriveButton(run, "Redrive all", {}, "Re-queue every dead unit of the run") : null);
  const rows = page.units.map((u) => h("tr", { "data-unit": u.unit },
    h("td", { class: "mono" }, h("a", { href: "#", onclick: (e) => { e.preventDefault(); openUnit(u.unit); } }, `#${u.unit}`)),
    h("td", { class: "mono ellipsis", title: u.item }, u.item),
    h("td", {}, u.step),
    h("td", { class: "mono ellipsis", title: u.error_message || "" }, h("b", {}, u.error_type || ""), `: ${u.error_message || ""}`),
    h("td", { class: "num" }, u.attempts),
    h("td", { class: "muted" }, fmtClock(u.finished_at)),
    h("td", {}, redriveButton(run, "Redrive", { step: u.step, error: u.signature },
      "Re-queue this unit and the others of its step with the same error, with the current code"))));
  el.replaceChildren(panel("Dead-letter queue", pager,
    view.notice ? h("div", { class: "alert bad" }, view.notice) : null,
    !run.redrivable ? h("div", { class: "alert warn" }, "This run was started from Python: redrive it from Python.") : null,
    rows.length ? h("table", { class: "grid-table dlq" },
      h("thead", {}, h("tr", {}, ...["unit", "item", "step", "error", "attempts", "died", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...rows)) : h("p", { class: "muted pad" }, "The dead-letter queue is empty.")));
}

function renderAlarms(el, alarms, now) {
  el.replaceChildren(panel("Alarms", h("span", { class: "muted" }, `${alarms.filter((a) => a.state === "firing").length} firing`),
    alarms.length ? h("ul", { class: "alarms" }, ...alarms.map((a) => h("li", { class: a.state },
      h("div", {}, chip(a.state), h("b", {}, a.name), h("span", { class: "muted" }, ` ${ago(a.changed_at, now)}`)),
      h("div", { class: "muted small" }, `value ${fmtNum(a.value)} · threshold ${fmtNum(a.threshold)}`),
      h("div", { class: "small" }, a.message))))
      : h("p", { class: "muted pad" }, "No alarm has fired.")));
}

// -- routing ----------------------------------------------------------------------------------
async function route(path) {
  const parts = path.replace(/\/+$/, "").split("/").slice(2).map(decodeURIComponent);
  if (parts[0] === "runs" && parts.length === 2) return runPage(parts[1]);
  if (parts[0] === "models" && parts.length === 1) return modelsPage();
  if (parts[0] === "models" && parts.length === 2) return modelPage(parts[1]);
  if (parts[0] === "models" && parts.length === 3) return versionPage(parts[1], parts[2]);
  return runsPage();
}
route(location.pathname).catch((err) => showError(main, err));
