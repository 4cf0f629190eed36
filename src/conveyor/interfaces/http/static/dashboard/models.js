// The model registry's views over /dashboard/api/models: the models; a model (its aliases,
// versions, the aliases' history as a timeline, promote and rollback); a version (lineage,
// metrics, the gate's table, exports). DOM is built with h() only: every name, reason and
// value from the registry is text.
import { ACTOR_COLORS, aliasTimeline, h } from "./charts.js";
import { BASE, ago, api, fillPicker, main, panel, setLive, setNav, showError } from "./ui.js";

const PAGE = 25;
const enc = encodeURIComponent;
const modelUrl = (name) => `${BASE}/models/${enc(name)}`;
const versionUrl = (name, v) => `${modelUrl(name)}/${enc(v)}`;

// -- small pieces -----------------------------------------------------------------------------
function crumbs(...parts) {  // [text, href] pairs; the last one is where we are
  const out = [];
  parts.forEach(([text, href], i) => {
    if (i) out.push(h("span", { class: "sep" }, "/"));
    out.push(href ? h("a", { href }, text) : h("span", { class: "mono" }, text));
  });
  document.getElementById("crumbs").replaceChildren(...out);
}

function start(which) {
  setNav(which);
  setLive(false, "registry");
  fillPicker(null).catch(() => {});  // the header's run picker; a 401 asks for the token
}

/** A metric's value: 4 decimals, or exponent notation when very small or large. */
export function fmtMetric(v) {
  if (v === null || v === undefined || typeof v !== "number") return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
  return v.toFixed(4);
}

function fmtSigned(v) {
  return v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${fmtMetric(v)}`;
}

function fmtPct(v) {
  return v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${(100 * v).toFixed(2)}%`;
}

/** A time as local date and time (``short``: the time only when it is today). */
function fmtWhen(t, short = false) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const time = d.toLocaleTimeString("en-GB", { hour12: false });
  const pad = (x) => String(x).padStart(2, "0");
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (short) return d.toDateString() === new Date().toDateString() ? time : `${date} ${time.slice(0, 5)}`;
  return `${date} ${time}`;
}

function shortDigest(d) {
  return d ? (String(d).length > 14 ? `${String(d).slice(0, 12)}…` : String(d)) : "–";
}

function verdict(passed, gated = true) {
  if (passed === true) return h("span", { class: "chip ok" }, "passed");
  if (passed === false) return h("span", { class: "chip bad" }, "gate failed");
  return h("span", { class: "chip skip" }, gated ? "no verdict" : "not gated");
}

function aliasTag(alias, version, href) {
  const body = [h("span", {}, alias), version !== undefined ? h("b", {}, `v${version}`) : null];
  return href ? h("a", { class: "alias", href }, ...body) : h("span", { class: "alias" }, ...body);
}

function text(v) {  // a lineage value as one line of text
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v === "number") return String(Number(v.toPrecision(12)));  // no float noise
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function kv(rows) {  // [label, value] pairs; a value is a node or text
  return h("table", { class: "kv" }, ...rows.filter(Boolean).map(([k, v]) =>
    h("tr", {}, h("th", {}, k), h("td", { class: "mono" }, v instanceof Node ? v : text(v)))));
}

function objectKv(obj, empty) {
  const entries = Object.entries(obj || {});
  return entries.length ? kv(entries.sort(([a], [b]) => a.localeCompare(b)))
    : h("p", { class: "muted pad" }, empty);
}

// -- the models -------------------------------------------------------------------------------
export async function modelsPage() {
  start("models");
  crumbs(["models"]);
  const body = h("div");
  main.replaceChildren(panel("Models", h("span", { class: "muted" }, "the registry · by name"), body));
  try {
    const data = await api("/models?limit=500");
    if (!data.models.length) {
      body.replaceChildren(h("p", { class: "muted pad" },
        "No model registered yet. Train one with conveyor train PIPELINE.py"));
      return;
    }
    body.replaceChildren(h("table", { class: "grid-table", id: "models-table" },
      h("thead", {}, h("tr", {}, ...["model", "kind", "versions", "latest", "aliases", "updated"]
        .map((c) => h("th", { class: c === "versions" ? "num" : "" }, c)))),
      h("tbody", {}, ...data.models.map((m) => h("tr", { "data-model": m.name },
        h("td", { class: "mono" }, h("a", { href: modelUrl(m.name) }, m.name)),
        h("td", {}, m.kind.replaceAll("_", " ")),
        h("td", { class: "num" }, m.versions),
        h("td", {}, h("a", { href: versionUrl(m.name, m.latest) }, `v${m.latest}`)),
        h("td", { class: "aliases" }, ...Object.entries(m.aliases).sort().map(([a, v]) =>
          aliasTag(a, v, versionUrl(m.name, v)))),
        h("td", { title: fmtWhen(m.updated_at) }, ago(m.updated_at, data.now)))))),
      ...(data.more ? [h("p", { class: "muted small" }, `${data.total} models; the first ${data.models.length} shown`)] : []));
  } catch (err) { if (err.status !== 401) showError(body, err); }
}

// -- a model ----------------------------------------------------------------------------------
const form = { version: null, alias: "champion", reason: "", force: false, confirm: null,
  rbAlias: null, rbReason: "" };
const mview = { offset: 0, notice: null };

export async function modelPage(name) {
  start("models");
  crumbs(["models", `${BASE}/models`], [name]);
  const slots = {};
  for (const k of ["head", "aliases", "timeline", "versions", "actions", "history"]) {
    slots[k] = h("div", { id: `slot-${k}` });
  }
  main.replaceChildren(slots.head,
    h("div", { class: "cols" },
      h("div", { class: "col-main" }, slots.timeline, slots.versions),
      h("div", { class: "col-side" }, slots.aliases, slots.actions)),
    slots.history);
  const load = async () => {
    try {
      const [data, hist] = await Promise.all([
        api(`/models/${enc(name)}?limit=${PAGE}&offset=${mview.offset}`),
        api(`/models/${enc(name)}/history?limit=500`)]);
      renderModelHead(slots.head, data);
      renderAliases(slots.aliases, data, load);
      renderTimeline(slots.timeline, hist);
      renderVersions(slots.versions, data, load);
      renderActions(slots.actions, data, load);
      renderHistory(slots.history, hist);
    } catch (err) {
      if (err.status !== 401) showError(slots.head, err);
    }
  };
  await load();
}

function renderModelHead(el, data) {
  const m = data.model;
  el.replaceChildren(h("section", { class: "run-head" },
    h("div", { class: "title" }, h("h1", { id: "model-name" }, m.name),
      h("span", { class: "chip skip" }, m.kind.replaceAll("_", " "))),
    h("div", { class: "meta" },
      h("span", {}, "versions ", h("b", {}, m.versions)),
      h("span", {}, "latest ", h("b", {}, h("a", { href: versionUrl(m.name, m.latest) }, `v${m.latest}`))),
      h("span", {}, "updated ", h("b", { title: fmtWhen(m.updated_at) }, ago(m.updated_at, data.now)))),
    mview.notice ? h("div", { class: `alert ${mview.notice.ok ? "ok" : "bad"}`, id: "model-notice" },
      mview.notice.text) : null));
}

function renderAliases(el, data) {
  const name = data.model.name;
  el.replaceChildren(panel("Aliases", h("span", { class: "muted" }, "who holds what"),
    data.aliases.length ? h("ul", { class: "alias-list", id: "alias-list" }, ...data.aliases.map((a) =>
      h("li", { "data-alias": a.alias },
        h("div", {}, aliasTag(a.alias, a.version, versionUrl(name, a.version)),
          h("span", { class: "muted small" }, a.since ? ` since ${ago(a.since, data.now)}` : "")),
        h("div", { class: "muted small" }, a.actor ? `moved by ${a.actor} ${a.who}` : "",
          a.previous ? ` · rollback goes to v${a.previous}` : " · no previous holder"))))
      : h("p", { class: "muted pad" }, "No alias yet: promote a version below.")));
}

function renderTimeline(el, hist) {
  const legend = h("div", { class: "legend" },
    ...Object.entries(ACTOR_COLORS).map(([actor, color]) =>
      h("span", {}, h("i", { class: "round", style: { background: color } }), actor)),
    h("span", {}, h("i", { class: "round hollow" }), "rollback"),
    h("span", {}, h("i", { class: "round halo" }), "forced"));
  el.replaceChildren(panel("Alias history",
    h("span", { class: "muted" }, hist.more ? `the last ${hist.moves.length} of ${hist.total} moves` : `${hist.total} move${hist.total === 1 ? "" : "s"} · hover a dot`),
    aliasTimeline({ moves: hist.moves, fmtWhen }), legend));
}

function renderVersions(el, data, reload) {
  const name = data.model.name;
  const metricName = data.versions.map((v) => v.metric.name).find(Boolean) || "metric";
  const pager = h("span", { class: "pager" },
    h("button", { class: "btn ghost", disabled: data.offset === 0,
      onclick: () => { mview.offset = Math.max(0, mview.offset - PAGE); reload(); } }, "‹ newer"),
    h("span", { class: "muted" }, data.versions.length
      ? `v${data.versions[0].version}–v${data.versions[data.versions.length - 1].version}` : "none"),
    h("button", { class: "btn ghost", disabled: !data.more,
      onclick: () => { mview.offset += PAGE; reload(); } }, "older ›"));
  el.replaceChildren(panel("Versions", pager,
    h("table", { class: "grid-table", id: "versions-table" },
      h("thead", {}, h("tr", {}, ...["version", "created", `${metricName} valid`, `${metricName} golden`,
        "gate", "aliases", "run", ""].map((c, i) => h("th", { class: i === 2 || i === 3 ? "num" : "" }, c)))),
      h("tbody", {}, ...data.versions.map((v) => h("tr", { "data-version": v.version },
        h("td", { class: "mono" }, h("a", { href: versionUrl(name, v.version) }, `v${v.version}`),
          v.kind === "model_set" ? h("span", { class: "muted small" }, ` · ${v.members} groups`) : null),
        h("td", { title: fmtWhen(v.created_at) }, ago(v.created_at, data.now)),
        h("td", { class: "num", title: v.metric.name || "" }, fmtMetric(v.metric.valid)),
        h("td", { class: "num", title: v.metric.name || "" }, fmtMetric(v.metric.golden)),
        h("td", {}, verdict(v.passed, v.gated)),
        h("td", { class: "aliases" }, ...v.aliases.map((a) => aliasTag(a))),
        h("td", { class: "mono" }, v.run_id ? h("a", { href: `${BASE}/runs/${enc(v.run_id)}` }, shortDigest(v.run_id)) : "–"),
        h("td", {}, h("button", { class: "btn", "data-promote": v.version, title: "choose this version in the promote form",
          onclick: () => { form.version = v.version; form.confirm = null; renderActions(document.getElementById("slot-actions"), data, reload);
            document.getElementById("promote-reason").focus(); } }, "promote…"))))))));
}

function renderActions(el, data, reload) {
  const name = data.model.name;
  const versions = data.versions;
  if (form.name !== name) {  // a fresh form for another model
    Object.assign(form, { name, version: null, alias: "champion", reason: "", force: false,
      confirm: null, rbAlias: null, rbReason: "" });
  }
  if (form.version === null && versions.length) form.version = versions[0].version;
  const chosen = versions.find((v) => v.version === form.version);
  const holder = data.aliases.find((a) => a.alias === form.alias);
  const failed = chosen && chosen.passed === false;
  const rerender = () => renderActions(el, data, reload);

  const select = h("select", { id: "promote-version", "aria-label": "version" },
    ...versions.map((v) => h("option", { value: v.version, selected: v.version === form.version },
      `v${v.version} · ${v.passed === true ? "passed" : v.passed === false ? "gate failed" : "not gated"}`)));
  select.addEventListener("change", () => { form.version = Number(select.value); form.confirm = null; rerender(); });
  const alias = h("input", { id: "promote-alias", value: form.alias, list: "alias-names", maxlength: 64,
    "aria-label": "alias", autocomplete: "off", spellcheck: "false" });
  alias.addEventListener("input", () => { form.alias = alias.value.trim(); form.confirm = null; });
  alias.addEventListener("change", rerender);
  const reason = h("input", { id: "promote-reason", value: form.reason, maxlength: 2000,
    placeholder: "why (kept in the history)", "aria-label": "reason", autocomplete: "off" });
  reason.addEventListener("input", () => { form.reason = reason.value; });
  const force = h("input", { type: "checkbox", id: "promote-force", checked: form.force });
  force.addEventListener("change", () => { form.force = force.checked; form.confirm = null; rerender(); });
  const blocked = !chosen ? "choose a version"
    : !/^[a-z][a-z0-9_-]{0,63}$/.test(form.alias) ? "an alias is lowercase letters, digits, _ and -"
      : form.alias === "latest" ? "latest is reserved: it always means the newest version"
        : holder && holder.version === form.version ? `v${form.version} holds ${form.alias} already`
          : failed && !form.force ? "its gate failed: tick force to promote it anyway" : null;
  const go = h("button", { class: "btn primary", id: "promote-button", disabled: Boolean(blocked),
    title: blocked || "" }, "Promote…");
  go.addEventListener("click", () => { form.confirm = "promote"; rerender(); });

  const post = async (path, body, what) => {
    try {
      const { move } = await api(`/models/${enc(name)}/${path}`, { method: "POST", body: JSON.stringify(body) });
      mview.notice = { ok: true, text: `${what}: ${move.alias} of ${move.name} is now v${move.to_version}` +
        (move.from_version ? ` (was v${move.from_version})` : "") };
      Object.assign(form, { reason: "", force: false, rbReason: "" });
    } catch (err) {
      if (err.status === 401) return;
      mview.notice = { ok: false, text: err.message };
    }
    form.confirm = null;
    await reload();
  };
  const confirmBox = (id, question, label, onYes) => h("div", { class: "confirm", id },
    h("div", {}, question),
    h("div", { class: "buttons" },
      h("button", { class: "btn primary", id: `${id}-yes`, onclick: (e) => { e.target.disabled = true; onYes(); } }, label),
      h("button", { class: "btn ghost", id: `${id}-no`, onclick: () => { form.confirm = null; rerender(); } }, "Cancel")));

  const promoteConfirm = form.confirm === "promote" && chosen ? confirmBox("promote-confirm",
    [`Move ${form.alias} of ${name} from ${holder ? `v${holder.version}` : "nowhere"} to v${form.version}?`,
      failed ? " Its gate failed: the move is recorded as forced." : ""].join(""),
    "Confirm promote", () => post("promote", { version: form.version, alias: form.alias, reason: form.reason,
      force: form.force, seen: holder ? holder.seq : 0 }, "Promoted")) : null;

  const rollable = data.aliases.filter((a) => a.previous);
  if (!rollable.some((a) => a.alias === form.rbAlias)) form.rbAlias = rollable.length ? rollable[0].alias : null;
  const rb = rollable.find((a) => a.alias === form.rbAlias);
  const rbSelect = h("select", { id: "rollback-alias", "aria-label": "alias to roll back", disabled: !rollable.length },
    ...rollable.map((a) => h("option", { value: a.alias, selected: a.alias === form.rbAlias },
      `${a.alias}: v${a.version} → v${a.previous}`)));
  rbSelect.addEventListener("change", () => { form.rbAlias = rbSelect.value; form.confirm = null; rerender(); });
  const rbReason = h("input", { id: "rollback-reason", value: form.rbReason, maxlength: 2000,
    placeholder: "why (kept in the history)", "aria-label": "rollback reason", autocomplete: "off" });
  rbReason.addEventListener("input", () => { form.rbReason = rbReason.value; });
  const rbGo = h("button", { class: "btn", id: "rollback-button", disabled: !rb,
    title: rb ? "" : "no alias has a previous holder" }, "Roll back…");
  rbGo.addEventListener("click", () => { form.confirm = "rollback"; rerender(); });
  const rollbackConfirm = form.confirm === "rollback" && rb ? confirmBox("rollback-confirm",
    `Move ${rb.alias} of ${name} back from v${rb.version} to v${rb.previous}?`, "Confirm rollback",
    () => post("rollback", { alias: rb.alias, reason: form.rbReason, seen: rb.seq }, "Rolled back")) : null;

  el.replaceChildren(panel("Promote", h("span", { class: "muted" }, "move an alias"),
    h("datalist", { id: "alias-names" }, ...["champion", "challenger", ...data.aliases.map((a) => a.alias)]
      .filter((a, i, all) => all.indexOf(a) === i).map((a) => h("option", { value: a }))),
    h("div", { class: "form" },
      h("label", {}, "version", select),
      h("label", {}, "alias", alias),
      h("label", { class: "full" }, "reason", reason),
      h("label", { class: `check ${failed ? "needed" : ""}` }, force,
        failed ? "force: promote although its gate failed" : "force (only for a version whose gate failed)"),
      h("div", { class: "full row" }, go, blocked ? h("span", { class: "muted small" }, blocked) : null)),
    promoteConfirm),
  panel("Rollback", h("span", { class: "muted" }, "back to the previous holder"),
    h("div", { class: "form" },
      h("label", { class: "full" }, "alias", rbSelect),
      h("label", { class: "full" }, "reason", rbReason),
      h("div", { class: "full row" }, rbGo, rb ? null : h("span", { class: "muted small" }, "no alias has a previous holder"))),
    rollbackConfirm));
}

function renderHistory(el, hist) {
  const rows = [...hist.moves].reverse();
  el.replaceChildren(panel("Moves", h("span", { class: "muted" }, "newest first"),
    rows.length ? h("table", { class: "grid-table", id: "history-table" },
      h("thead", {}, h("tr", {}, ...["when", "alias", "move", "action", "by", "who", "why"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...rows.map((m) => h("tr", { "data-seq": m.seq, "data-alias": m.alias },
        h("td", { title: fmtWhen(m.at) }, fmtWhen(m.at, true)),
        h("td", {}, h("span", { class: "alias" }, m.alias)),
        h("td", { class: "mono" }, `${m.from_version ? `v${m.from_version}` : "none"} → v${m.to_version}`),
        h("td", {}, m.action, m.forced ? [" ", h("span", { class: "chip warn" }, "forced")] : null),
        h("td", {}, h("span", { class: "dot", style: { background: ACTOR_COLORS[m.actor] || "#8792a2" } }), m.actor),
        h("td", { class: "mono" }, m.who),
        h("td", { class: "reason" }, m.reason || h("span", { class: "muted" }, "–"))))))
      : h("p", { class: "muted pad" }, "No alias has moved yet.")));
}

// -- a version --------------------------------------------------------------------------------
export async function versionPage(name, version) {
  start("models");
  crumbs(["models", `${BASE}/models`], [name, modelUrl(name)], [`v${version}`]);
  main.replaceChildren(h("p", { class: "muted pad" }, "Loading…"));
  let v;
  try {
    v = await api(`/models/${enc(name)}/versions/${enc(version)}`);
  } catch (err) {
    if (err.status !== 401) showError(main, err);
    return;
  }
  const lin = v.lineage || {};
  const golden = lin.golden || {};
  const metrics = v.metrics || {};
  const names = [...new Set([...Object.keys(metrics.valid || {}), ...Object.keys(metrics.golden || {})])].sort();
  const runLink = (id) => (v.run_id ? h("a", { href: `${BASE}/runs/${enc(v.run_id)}`, id }, v.run_id) : "–");
  main.replaceChildren(
    h("section", { class: "run-head" },
      h("div", { class: "title" }, h("h1", {}, `${v.name} v${v.version}`), verdict(v.passed, Boolean(v.gate)),
        ...v.aliases.map((a) => aliasTag(a)),
        v.version !== v.latest ? h("a", { class: "muted small", href: versionUrl(v.name, v.latest) }, `latest is v${v.latest}`) : null),
      h("div", { class: "meta" },
        h("span", {}, "kind ", h("b", {}, v.kind.replaceAll("_", " "), v.kind === "model_set" ? ` · ${v.members} groups` : "")),
        h("span", {}, "registered ", h("b", {}, fmtWhen(v.created_at))),
        h("span", {}, "run ", h("b", { class: "mono" }, runLink("version-run"))))),
    h("div", { class: "cols wide-side" },
      h("div", { class: "col-main" },
        panel("Lineage", h("span", { class: "muted" }, "where it came from"), h("div", { id: "lineage" }, kv([
          ["dataset", lin.dataset || "(a file)"],
          ["data version", lin.data_version],
          ["split", splitText(lin.split)],
          ["golden version", golden.version],
          ["golden rows", golden.rows],
          ["training run", runLink("lineage-run")],
          lin.trial !== undefined && lin.trial !== null ? ["trial", lin.trial] : null,
          lin.seed !== undefined && lin.seed !== null ? ["seed", lin.seed] : null,
          ["artifact", `${v.artifact} (${v.format})`],
        ]))),
        gatePanel(v)),
      h("div", { class: "col-side" },
        panel("Metrics", h("span", { class: "muted" }, v.metric.name ? `key: ${v.metric.name}` : ""),
          names.length ? h("table", { class: "grid-table", id: "metrics-table" },
            h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", { class: "num" }, "valid"), h("th", { class: "num" }, "golden"))),
            h("tbody", {}, ...names.map((m) => h("tr", { class: m === v.metric.name ? "key" : "" },
              h("td", {}, m), h("td", { class: "num" }, fmtMetric((metrics.valid || {})[m])),
              h("td", { class: "num" }, fmtMetric((metrics.golden || {})[m]))))))
            : h("p", { class: "muted pad" }, "No metric recorded.")),
        panel("Parameters", null, h("div", { id: "params" }, objectKv(lin.params, "No parameters (not searched)."))),
        panel("Code versions", null, objectKv(lin.code_versions, "None recorded.")),
        panel("Packages", null, objectKv(lin.packages, "None recorded.")),
        panel("Exports", null, (v.exports || []).length ? h("table", { class: "kv", id: "exports" },
          ...v.exports.map((e) => h("tr", {}, h("th", {}, e.format),
            h("td", { class: "mono" }, e.artifact ? shortDigest(e.artifact) : "",
              h("div", { class: "muted small" }, Object.entries(e.details || {}).map(([k, x]) =>
                `${k} ${typeof x === "number" ? fmtMetric(x) : text(x)}`).join(" · ")),
              h("div", { class: "muted small" }, fmtWhen(e.at))))))
          : h("p", { class: "muted pad" }, "Not exported.")))));
}

function splitText(split) {
  if (!split) return "–";
  if (split.by === "hash") {
    const shares = Object.entries(split.shares || {}).map(([k, x]) => `${k} ${x}`).join(" · ");
    return `by hash${split.id_column ? ` of ${split.id_column}` : " of each row"}: ${shares}`;
  }
  if (split.by === "time") {
    const cuts = Object.entries(split.cutoffs || {}).map(([k, x]) => `${k} < ${text(x)}`).join(" · ");
    return `by time on ${split.column}: ${cuts}`;
  }
  return text(split);
}

const given = (x) => x !== null && x !== undefined;
const CHECKS = [  // [check, column, the threshold as text (null: the rule does not set it)]
  ["floor", "floor", (r) => (given(r.floor) ? `${r.direction === "minimize" ? "≤" : "≥"} ${fmtMetric(r.floor)}` : null)],
  ["min_absolute", "min gain", (r) => (given(r.min_absolute) ? `≥ ${fmtSigned(r.min_absolute)}` : null)],
  ["min_relative", "min rel. gain", (r) => (given(r.min_relative) ? `≥ ${fmtPct(r.min_relative)}` : null)],
  ["noise", "beats noise", (r) => (r.noise ? "interval > 0" : null)]];

function mark(check, threshold) {
  const cls = check === true ? "ok-text" : check === false ? "bad-text" : "muted";
  const sym = check === true ? "✓" : check === false ? "✗" : "—";
  const shown = given(threshold) ? ` ${threshold}` : "";
  return h("td", { class: `check ${cls}`, title: check === null || check === undefined
    ? (shown ? "not checked (no champion)" : "not set") : check ? "holds" : "fails" },
  h("b", {}, sym), h("span", { class: "muted small" }, shown));
}

function gatePanel(v) {
  const g = v.gate;
  if (!g) {
    return panel("Gate", h("span", { class: "muted" }, "champion / challenger"),
      h("p", { class: "muted pad" }, "This version was not gated."));
  }
  const golden = g.golden || {};
  const head = h("div", { class: "meta gate-meta" },
    verdict(g.passed),
    h("span", {}, g.champion ? ["against champion ", h("a", { href: versionUrl(v.name, g.champion) }, `v${g.champion}`)] : "first model: no champion to beat"),
    h("span", {}, "golden ", h("b", { class: "mono" }, shortDigest(golden.version)), golden.rows !== undefined ? ` · ${golden.rows} rows` : ""),
    g.rescored ? h("span", {}, "champion rescored on it") : null,
    h("span", { class: "muted" }, `bootstrap ${Math.round((g.confidence || 0) * 100)}% · ${g.resamples} resamples · seed ${g.seed}`));
  return panel("Gate", h("span", { class: "muted" }, "champion / challenger on the golden set"), head,
    h("table", { class: "grid-table gate", id: "gate-table" },
      h("thead", {}, h("tr", {}, ...["metric", "challenger", "champion", "delta", "relative", "interval",
        ...CHECKS.map(([, label]) => label), "verdict"].map((c, i) => h("th", { class: i >= 1 && i <= 5 ? "num" : "" }, c)))),
      h("tbody", {}, ...(g.rules || []).map((r) => h("tr", { "data-metric": r.metric },
        h("td", {}, r.metric, h("span", { class: "muted small" }, r.direction === "minimize" ? " ↓" : " ↑")),
        h("td", { class: "num" }, fmtMetric(r.challenger)),
        h("td", { class: "num" }, fmtMetric(r.champion)),
        h("td", { class: "num" }, fmtSigned(r.delta)),
        h("td", { class: "num" }, fmtPct(r.relative)),
        h("td", { class: "num" }, r.interval ? `[${fmtSigned(r.interval[0])}, ${fmtSigned(r.interval[1])}]` : "–"),
        ...CHECKS.map(([key, , threshold]) => mark((r.checks || {})[key], threshold(r))),
        h("td", {}, h("span", { class: `chip ${r.passed ? "ok" : "bad"}` }, r.passed ? "holds" : "fails")))))));
}
