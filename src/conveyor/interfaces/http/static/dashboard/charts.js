// Small chart and DOM helpers. Everything is built with createElement(NS) and textContent:
// no markup strings, so text from the ledger is always shown as text.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#4f9cf7", "#3fb950", "#d29922", "#a371f7", "#39c5cf", "#f778ba",
  "#ff9b50", "#8ddb8c", "#b3c1d6", "#e5534b"];

/** An HTML element: h("div", {class: "x", title: "..."}, child, "text", ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "onclick") el.addEventListener("click", v);
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function fmtDur(sec) {
  if (sec === null || sec === undefined || !isFinite(sec)) return "–";
  if (sec < 0.001) return `${(sec * 1e6).toFixed(0)} µs`;
  if (sec < 1) return `${(sec * 1000).toFixed(sec < 0.01 ? 1 : 0)} ms`;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 2 : 1)} s`;
  const m = Math.floor(sec / 60), r = Math.round(sec % 60);
  if (m < 60) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: n < 10 ? 2 : n < 100 ? 1 : 0 });
}

export function fmtClock(t) {
  return new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A stacked progress bar of a step's or run's units by state. */
export function progressBar(counts, total) {
  const bar = h("div", { class: "bar", role: "progressbar" });
  const parts = [["done", "ok"], ["cached", "cached"], ["dead", "bad"], ["skipped", "skip"],
    ["running", "run"]];
  for (const [state, cls] of parts) {
    const n = counts[state] || 0;
    if (!n || !total) continue;
    bar.append(h("span", { class: `seg ${cls}`, style: { width: `${(100 * n) / total}%` },
      title: `${state}: ${fmtNum(n)}` }));
  }
  return bar;
}

/** A line chart of several series over equal time buckets; hover shows each bucket's values. */
export function lineChart({ series, start, width, height = 190, unit = "/s", empty = "no data yet" }) {
  const W = 640, H = height, L = 44, R = 10, T = 10, B = 24;
  const n = series.length ? series[0].values.length : 0;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", preserveAspectRatio: "none" });
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values)));
  const x = (i) => L + ((W - L - R) * i) / Math.max(1, n - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: y(v) + 3, class: "tick", "text-anchor": "end" }, fmtNum(v)));
  }
  for (let k = 0; k <= 4 && n > 1; k++) {
    const i = Math.round(((n - 1) * k) / 4);
    svg.append(s("text", { x: x(i), y: H - 6, class: "tick",
      "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" },
      fmtClock(start + width * (i + 1))));
  }
  if (!series.some((x) => x.values.some((v) => v > 0))) {
    svg.append(s("text", { x: (L + W) / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, empty));
  }
  for (const line of series) {
    const pts = line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    if (line.area) {
      svg.append(s("polygon", { points: `${x(0)},${y(0)} ${pts} ${x(n - 1)},${y(0)}`,
        fill: line.color, class: "area" }));
    }
    svg.append(s("polyline", { points: pts, stroke: line.color, class: line.dash ? "line dash" : "line" }));
  }
  for (let i = 0; i < n; i++) {  // hover targets: one band per bucket
    const tip = [`${fmtClock(start + width * i)}–${fmtClock(start + width * (i + 1))}`,
      ...series.map((l) => `${l.name}: ${fmtNum(l.values[i])}${unit}`)].join("\n");
    const w = (W - L - R) / Math.max(1, n - 1);
    svg.append(s("rect", { x: x(i) - w / 2, y: T, width: w, height: H - T - B, class: "hover" },
      s("title", {}, tip)));
  }
  return svg;
}

/** Horizontal bars of p50 and p95 duration per step. */
export function latencyBars(rows) {
  const rowH = 30, L = 90, R = 96, W = 440, T = 6;
  const H = T + rows.length * rowH + 22;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars" });
  const max = niceMax(Math.max(0, ...rows.map((r) => r.p95 || 0)));
  const x = (v) => L + ((W - L - R) * v) / max;
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.append(s("line", { x1: x(v), x2: x(v), y1: T, y2: H - 18, class: "grid" }));
    svg.append(s("text", { x: x(v), y: H - 4, class: "tick", "text-anchor": "middle" }, fmtDur(v)));
  }
  rows.forEach((r, i) => {
    const top = T + i * rowH;
    svg.append(s("text", { x: L - 8, y: top + 17, class: "label", "text-anchor": "end" },
      r.step.length > 12 ? `${r.step.slice(0, 11)}…` : r.step, s("title", {}, r.step)));
    if (r.p95 === null || r.p95 === undefined) {
      svg.append(s("text", { x: L + 4, y: top + 17, class: "tick" }, "no finished units"));
      return;
    }
    svg.append(s("rect", { x: L, y: top + 5, width: Math.max(1, x(r.p95) - L), height: 18,
      rx: 2, class: "p95" }, s("title", {}, `${r.step} p95 ${fmtDur(r.p95)}`)));
    svg.append(s("rect", { x: L, y: top + 9, width: Math.max(1, x(r.p50) - L), height: 10,
      rx: 2, class: "p50" }, s("title", {}, `${r.step} p50 ${fmtDur(r.p50)}`)));
    svg.append(s("text", { x: x(r.p95) + 6, y: top + 17, class: "val" },
      `${fmtDur(r.p50)} / ${fmtDur(r.p95)}`));
  });
  return svg;
}

/** Who moved an alias, by colour: a person, the gate of a training run, an alarm. */
export const ACTOR_COLORS = { user: "#4f9cf7", gate: "#3fb950", alarm: "#f85149" };
const ACTOR_OTHER = "#8792a2";

/** Aliases first by importance, then by name. */
function aliasOrder(a, b) {
  const rank = (x) => (x === "champion" ? 0 : x === "challenger" ? 1 : 2);
  return rank(a) - rank(b) || a.localeCompare(b);
}

/** The aliases' history: one lane per alias, a dot per move in the order they happened
 * (filled: a promotion, a ring: a rollback, a dashed halo: forced past a failed gate),
 * coloured by who moved it, and each holder's span as a bar labelled with its version.
 * Hovering a dot shows from → to, who, why and when (an SVG <title>: text, never markup). */
export function aliasTimeline({ moves, fmtWhen, width = 900 }) {
  const aliases = [...new Set(moves.map((m) => m.alias))].sort(aliasOrder);
  const order = [...moves].sort((a, b) => a.at - b.at || a.seq - b.seq);
  const W = width, L = 110, R = 16, T = 10, laneH = 36, B = 26;
  const H = T + Math.max(1, aliases.length) * laneH + B;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart timeline", id: "alias-timeline",
    role: "img", "aria-label": "alias history" });
  if (!order.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" },
      "no alias has moved yet"));
    return svg;
  }
  const n = order.length;
  const step = (W - L - R) / n;
  const x = (i) => L + step * (i + 0.5);
  const lane = (alias) => T + aliases.indexOf(alias) * laneH + laneH / 2;
  aliases.forEach((alias) => {
    const y = lane(alias);
    svg.append(s("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: L - 10, y: y + 4, class: "label", "text-anchor": "end" },
      alias.length > 14 ? `${alias.slice(0, 13)}…` : alias, s("title", {}, alias)));
  });
  const index = new Map(order.map((m, i) => [m, i]));
  for (const alias of aliases) {  // each holder's span: from its move to the alias's next one
    const mine = order.filter((m) => m.alias === alias);
    mine.forEach((m, k) => {
      const x0 = x(index.get(m)), x1 = k + 1 < mine.length ? x(index.get(mine[k + 1])) : W - R;
      const color = ACTOR_COLORS[m.actor] || ACTOR_OTHER;
      svg.append(s("rect", { x: x0, y: lane(alias) - 5, width: Math.max(1, x1 - x0), height: 10,
        rx: 3, fill: color, class: k + 1 < mine.length ? "span" : "span current" }));
      if (x1 - x0 >= 34) {
        svg.append(s("text", { x: x0 + 10, y: lane(alias) - 9, class: "val" }, `v${m.to_version}`));
      }
    });
  }
  const ticks = Math.min(n, Math.max(2, Math.floor((W - L - R) / 130)));
  const shown = new Set(Array.from({ length: ticks }, (_, k) =>
    Math.round((k * (n - 1)) / Math.max(1, ticks - 1))));
  order.forEach((m, i) => {
    const color = ACTOR_COLORS[m.actor] || ACTOR_OTHER;
    const y = lane(m.alias), cx = x(i);
    const from = m.from_version === null || m.from_version === undefined ? "none" : `v${m.from_version}`;
    const tip = [`${m.alias}: ${from} → v${m.to_version}`,
      `${m.action}${m.forced ? " (forced past a failed gate)" : ""} by ${m.actor} ${m.who}`,
      `why: ${m.reason || "(no reason given)"}`, fmtWhen(m.at)].join("\n");
    const dot = s("g", { class: `move ${m.action}`, "data-seq": m.seq, "data-alias": m.alias },
      s("title", {}, tip),
      s("circle", { cx, cy: y, r: 13, class: "hit" }));
    if (m.forced) dot.append(s("circle", { cx, cy: y, r: 10, class: "forced" }));
    dot.append(m.action === "rollback"
      ? s("circle", { cx, cy: y, r: 6, class: "dot-ring", stroke: color })
      : s("circle", { cx, cy: y, r: 6, class: "dot-fill", fill: color }));
    svg.append(dot);
    if (shown.has(i)) {
      svg.append(s("text", { x: cx, y: H - 8, class: "tick",
        "text-anchor": n === 1 ? "middle" : i === 0 ? "start" : i === n - 1 ? "end" : "middle" },
        fmtWhen(m.at, true)));
    }
  });
  return svg;
}
