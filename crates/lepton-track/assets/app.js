// The Lepton run dashboard: runs table (sort, filter, select), overlaid learning curves (uPlot),
// the focused run's evaluation, explanations and compression reports. Live: the runs list is
// reloaded every 5 s and the selected runs' metrics.jsonl tailed every 2 s from the last offset.
"use strict";

const PALETTE = ["#6ea8fe", "#f5b942", "#3ecf8e", "#ef6b73", "#a78bfa", "#2dd4bf", "#f472b6", "#fb923c",
  "#94a3b8", "#84cc16"];
const MAX_OVERLAY = PALETTE.length;
const PREFERRED = ["val_loss", "train_loss", "val_accuracy", "train_accuracy"];
const HIDDEN = new Set(["seconds", "monitored"]);

const state = {
  runs: [], sort: { key: "updated", dir: -1 }, filter: "", selected: new Set(), chosen: false,
  focus: null, series: new Map(), colors: new Map(), charts: {}, chartKey: "",
};
window.leptonCharts = state.charts; // for tests and the console: metric -> uPlot instance

const $ = (s) => document.querySelector(s);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const enc = (id) => encodeURIComponent(id);
// Metric values: four decimals (exponent when tiny or huge); `int` keeps counts as integers.
function fmt(x, digits = 4, int = false) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (int && Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : x.toFixed(digits);
}
function fmtTime(s) {
  if (!s && s !== 0) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + String(Math.round(s % 60)).padStart(2, "0") + " s";
  return Math.floor(s / 3600) + " h " + String(Math.round((s % 3600) / 60)).padStart(2, "0") + " m";
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + u[i];
}
function fmtAgo(t) {
  if (!t) return "–";
  const s = Date.now() / 1000 - t;
  if (s < 60) return Math.max(0, Math.round(s)) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(t * 1000).toLocaleDateString();
}
async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}
function colorOf(id) {
  if (!state.colors.has(id)) state.colors.set(id, PALETTE[state.colors.size % PALETTE.length]);
  return state.colors.get(id);
}
const finalScore = (r) => r.report.accuracy ?? r.report.r2 ?? r.report.rmse ?? null;
const betterLow = (m) => /loss|error|rmse|mae|mse/.test(m || "");

// ---- runs table -------------------------------------------------------------------------------
const SORTS = {
  name: (r) => r.name.toLowerCase(), kind: (r) => r.kind, status: (r) => r.status, epochs: (r) => r.epochs,
  best: (r) => (r.best ? (betterLow(r.best.metric) ? -r.best.value : r.best.value) : null),
  accuracy: finalScore, time: (r) => r.train_seconds, size: (r) => r.photon_bytes, updated: (r) => r.updated,
};
function visibleRuns() {
  const f = state.filter.trim().toLowerCase();
  const rows = state.runs.filter((r) => !f || [r.name, r.id, r.kind, r.status].some((s) => s.toLowerCase().includes(f)));
  const key = SORTS[state.sort.key]; const dir = state.sort.dir;
  return rows.sort((a, b) => {
    const x = key(a); const y = key(b);
    if (x === y) return a.id < b.id ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
}
function renderTable() {
  const rows = visibleRuns();
  $("#count").textContent = rows.length === state.runs.length ? rows.length : rows.length + " of " + state.runs.length;
  for (const th of document.querySelectorAll("#runs th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === state.sort.key ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  const maxBest = Math.max(1e-12, ...rows.filter((r) => r.best && !betterLow(r.best.metric)).map((r) => r.best.value));
  const body = $("#runs tbody");
  body.replaceChildren(...rows.map((r) => {
    const sel = state.selected.has(r.id);
    const box = el("input", { type: "checkbox", checked: sel, "aria-label": "overlay " + r.name,
      onclick: (e) => { e.stopPropagation(); toggle(r.id, e.target.checked); } });
    const best = r.best
      ? [fmt(r.best.value), el("span", { class: "metric-name" }, r.best.metric),
         betterLow(r.best.metric) ? null : el("span", { class: "bar", style: `width:${Math.round(40 * r.best.value / maxBest)}px` })]
      : "–";
    const planned = r.epochs_planned ? " / " + r.epochs_planned : "";
    return el("tr", { "data-id": r.id, class: r.id === state.focus ? "focus" : "", onclick: () => focus(r.id) },
      el("td", { class: "sel" }, box),
      el("td", { class: "name" }, el("span", { class: "swatch", style: `background:${sel ? colorOf(r.id) : "transparent"}` }), r.name,
        r.id !== r.name ? el("span", { class: "id mono" }, r.id) : null),
      el("td", {}, r.kind),
      el("td", {}, el("span", { class: "status " + r.status, title: r.error || "" }, r.status)),
      el("td", { class: "num" }, r.epochs + planned),
      el("td", { class: "num" }, best),
      el("td", { class: "num" }, fmt(finalScore(r))),
      el("td", { class: "num" }, fmtTime(r.train_seconds)),
      el("td", { class: "num" }, fmtBytes(r.photon_bytes)),
      el("td", { class: "num", title: r.updated ? new Date(r.updated * 1000).toISOString() : "" }, fmtAgo(r.updated)));
  }));
  if (!rows.length) {
    const why = state.runs.length ? "No run matches the filter." : "No runs yet: `lepton train SPEC --out RUNS_DIR/NAME` makes one; it appears here as it trains.";
    body.append(el("tr", { class: "empty-row" }, el("td", { colspan: 10, class: "empty" }, why)));
  }
  $("#select-all").checked = rows.length > 0 && rows.every((r) => state.selected.has(r.id));
}
function toggle(id, on) {
  state.chosen = true;
  if (on && state.selected.size >= MAX_OVERLAY) return renderTable();
  if (on) state.selected.add(id); else state.selected.delete(id);
  renderTable(); renderCharts(); pollMetrics();
}

// ---- metrics and charts ----------------------------------------------------------------------
async function tail(id) {
  let s = state.series.get(id);
  if (!s) { s = { offset: 0, line: 1, epochs: [], steps: [] }; state.series.set(id, s); }
  for (let i = 0; i < 16; i++) { // bounded catch-up per tick
    const m = await getJson(`/api/runs/${enc(id)}/metrics?since=${s.offset}&line=${s.line}`);
    if (m.reset) { s.epochs = []; s.steps = []; }
    s.epochs.push(...m.epochs); s.steps.push(...m.steps);
    const changed = m.offset !== s.offset || m.reset;
    s.offset = m.offset; s.line = m.next_line;
    if (!m.more) return changed;
  }
  return true;
}
async function pollMetrics() {
  const ids = [...state.selected];
  const changed = (await Promise.all(ids.map((id) => tail(id).catch(() => false)))).some(Boolean);
  if (changed) renderCharts();
}
function metricKeys(ids) {
  const keys = new Set();
  for (const id of ids) for (const e of state.series.get(id)?.epochs ?? []) for (const k of Object.keys(e.values)) if (!HIDDEN.has(k)) keys.add(k);
  const rest = [...keys].filter((k) => !PREFERRED.includes(k)).sort();
  const charts = PREFERRED.filter((k) => keys.has(k)).concat(rest).map((k) => ({ key: k, kind: "epochs", x: "epoch" }));
  if (ids.some((id) => state.series.get(id)?.steps.some((s) => "loss" in s.values))) charts.push({ key: "loss", kind: "steps", x: "step", title: "loss (logged steps)" });
  return charts;
}
function chartData(ids, spec) {
  const xs = new Set();
  const maps = ids.map((id) => {
    const m = new Map();
    for (const r of state.series.get(id)?.[spec.kind] ?? []) if (spec.key in r.values) { m.set(r[spec.x], r.values[spec.key]); xs.add(r[spec.x]); }
    return m;
  });
  const x = [...xs].sort((a, b) => a - b);
  return [x, ...maps.map((m) => x.map((v) => (m.has(v) ? m.get(v) : null)))];
}
// A run's name, or its id where several runs share the name.
function label(id) {
  const name = state.runs.find((r) => r.id === id)?.name ?? id;
  return state.runs.filter((r) => r.name === name).length > 1 ? id : name;
}
// Charts follow their card's width (uPlot draws at a fixed size).
const holders = new WeakMap();
const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const chart = holders.get(e.target);
    const width = Math.max(280, Math.floor(e.contentRect.width) - 4);
    if (chart && Math.abs(chart.width - width) > 4) chart.setSize({ width, height: 240 });
  }
});
function renderCharts() {
  const ids = state.runs.map((r) => r.id).filter((id) => state.selected.has(id));
  const specs = metricKeys(ids);
  const key = JSON.stringify([ids, specs.map((s) => s.key + s.kind)]);
  const box = $("#charts");
  if (key !== state.chartKey) {
    state.chartKey = key;
    resizer.disconnect();
    for (const k of Object.keys(state.charts)) { state.charts[k].destroy(); delete state.charts[k]; }
    box.replaceChildren();
    if (!specs.length) box.append(el("div", { class: "empty" }, ids.length ? "No metrics yet." : "Select runs to overlay their curves."));
    for (const spec of specs) {
      const name = spec.kind === "steps" ? "step:" + spec.key : spec.key;
      const holder = el("div", { class: "chart", "data-metric": name }, el("h3", {}, spec.title ?? spec.key.replace(/_/g, " ")));
      box.append(holder);
      const width = Math.max(280, holder.getBoundingClientRect().width - 20);
      const opts = {
        width, height: 240, legend: { show: true },
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: false } },
        axes: [
          { label: spec.x, stroke: "#8b96ab", grid: { stroke: "#2a3448", width: 1 }, ticks: { stroke: "#2a3448" } },
          { stroke: "#8b96ab", grid: { stroke: "#2a3448", width: 1 }, ticks: { stroke: "#2a3448" }, size: 60,
            values: (u, v) => v.map((x) => fmt(x, 3, true)) },
        ],
        series: [{ label: spec.x }, ...ids.map((id) => ({
          label: label(id), stroke: colorOf(id), width: 2, spanGaps: true,
          points: { show: false }, value: (u, v) => fmt(v),
        }))],
      };
      const chart = new uPlot(opts, chartData(ids, spec), holder);
      state.charts[name] = chart;
      holders.set(holder, chart);
      resizer.observe(holder);
    }
  } else {
    for (const spec of specs) state.charts[spec.kind === "steps" ? "step:" + spec.key : spec.key].setData(chartData(ids, spec));
  }
  $("#legend").replaceChildren(...ids.map((id) => el("span", {}, el("span", { class: "swatch", style: `background:${colorOf(id)}` }),
    label(id))));
  // Last values, as plain DOM (readable by people and tests alike).
  const rows = [];
  for (const id of ids) {
    const last = state.series.get(id)?.epochs.at(-1);
    if (!last) continue;
    for (const spec of specs.filter((s) => s.kind === "epochs" && s.key in last.values)) {
      rows.push(el("tr", { "data-run": id, "data-metric": spec.key, "data-value": String(last.values[spec.key]) },
        el("td", {}, label(id)), el("td", {}, spec.key),
        el("td", { class: "num" }, last.epoch), el("td", { class: "num" }, fmt(last.values[spec.key]))));
    }
  }
  $("#last-values tbody").replaceChildren(...rows);
}

// ---- run detail -------------------------------------------------------------------------------
async function focus(id) {
  state.focus = id; renderTable();
  let d;
  try { d = await getJson(`/api/runs/${enc(id)}`); } catch (e) { return; }
  if (state.focus !== id) return;
  $("#detail").hidden = false;
  $("#detail-title").replaceChildren(el("span", { class: "swatch", style: `background:${colorOf(id)}` }), d.name, " ",
    el("span", { class: "status " + d.status }, d.status));
  $("#detail-path").textContent = d.path;
  // A failed run says why (the trainer's status.json), above everything else.
  $("#detail-error").hidden = !d.error;
  $("#detail-error").textContent = d.error ? "failed: " + d.error : "";
  const tile = (k, v) => el("div", { class: "tile" }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
  const tiles = [tile("model", d.kind), tile("epochs", d.epochs + (d.epochs_planned ? " / " + d.epochs_planned : "")),
    tile("steps", fmt(d.steps, 0, true))];
  if (d.best) tiles.push(tile("best " + d.best.metric, fmt(d.best.value)));
  for (const [k, v] of Object.entries(d.report)) if (typeof v === "number" && k !== "samples") tiles.push(tile(k.replace(/_/g, " "), fmt(v)));
  tiles.push(tile("train time", fmtTime(d.train_seconds)), tile("model.photon", fmtBytes(d.photon_bytes)));
  $("#tiles").replaceChildren(...tiles);
  renderConfusion(d.report_full);
  const spec = flat(d.spec ?? {}, "", {}, true);
  $("#spec-box").hidden = !Object.keys(spec).length;
  $("#spec").replaceChildren(el("table", { class: "compact" }, el("tbody", {},
    Object.entries(spec).map(([k, v]) => el("tr", {}, el("td", { class: "mono" }, k), el("td", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v)))))));
  renderCompression(d.artifacts.compression);
  const fileUrl = (f) => `/api/runs/${enc(id)}/files/${f.split("/").map(encodeURIComponent).join("/")}`;
  const images = d.artifacts.explanations.filter((e) => e.file.endsWith(".png"));
  $("#explain-box").hidden = d.artifacts.explanations.length === 0;
  $("#explain").replaceChildren(...images.map((e) => el("figure", {}, el("img", { src: fileUrl(e.file), alt: e.file, loading: "lazy" }),
    el("figcaption", {}, e.stem + " · " + e.method))),
  ...d.artifacts.explanations.filter((e) => e.file.endsWith(".json")).map((e) => el("figure", {},
    el("a", { href: fileUrl(e.file), target: "_blank" }, e.file))));
  $("#plots-box").hidden = d.artifacts.plots.length === 0;
  $("#plots").replaceChildren(...d.artifacts.plots.map((p) => el("figure", {}, el("img", { src: fileUrl(p), alt: p, loading: "lazy" }),
    el("figcaption", {}, p))));
}
function renderConfusion(rep) {
  const cm = rep?.confusion; const classes = rep?.per_class ?? [];
  $("#confusion-box").hidden = !Array.isArray(cm);
  $("#classes-box").hidden = !classes.length;
  if (Array.isArray(cm)) {
    const names = cm.map((_, i) => classes[i]?.name ?? String(i));
    const rowMax = cm.map((r) => Math.max(1, ...r));
    const head = el("tr", {}, el("th", { class: "muted" }, "true \\ pred"), ...names.map((n) => el("th", {}, n)));
    const rows = cm.map((r, i) => el("tr", {}, el("th", {}, names[i]), ...r.map((v, j) => {
      const a = v / rowMax[i];
      const hue = i === j ? "62,207,142" : "239,107,115";
      return el("td", { style: `background:rgba(${hue},${(0.08 + 0.8 * a).toFixed(3)})`, title: `${names[i]} → ${names[j]}: ${v}` }, fmt(v, 0, true));
    })));
    $("#confusion").replaceChildren(el("table", { class: "cm" }, el("thead", {}, head), el("tbody", {}, rows)));
  }
  if (classes.length) {
    $("#classes").replaceChildren(el("table", { class: "compact" },
      el("thead", {}, el("tr", {}, ["class", "precision", "recall", "F1", "support"].map((h, i) => el("th", { class: i ? "num" : "" }, h)))),
      el("tbody", {}, classes.map((c) => el("tr", {}, el("td", {}, c.name), el("td", { class: "num" }, fmt(c.precision)),
        el("td", { class: "num" }, fmt(c.recall)), el("td", { class: "num" }, fmt(c.f1)), el("td", { class: "num" }, fmt(c.support, 0, true)))))));
  }
}
// Nested objects to dotted keys; with `arrays`, arrays of objects become `key[i].field` and other
// arrays one value (as `lepton runs compare` shows a spec).
function flat(obj, prefix = "", out = {}, arrays = false) {
  for (const [k, v] of Object.entries(obj ?? {})) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, key, out, arrays);
    else if (arrays && Array.isArray(v) && v.some((x) => x && typeof x === "object")) v.forEach((x, i) => flat(x, `${key}[${i}]`, out, arrays));
    else if (arrays && Array.isArray(v)) out[key] = v;
    else if (typeof v !== "object" || v === null) out[key] = v;
  }
  return out;
}
function renderCompression(list) {
  $("#compress-box").hidden = !list.length;
  if (!list.length) return;
  const flats = list.map((c) => flat(c.report));
  const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))];
  $("#compress").replaceChildren(el("div", { class: "table-wrap" }, el("table", { class: "compact" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), list.map((c) => el("th", { class: "num" }, c.name)))),
    el("tbody", {}, keys.map((k) => el("tr", {}, el("td", {}, k), flats.map((f) => el("td", { class: "num" }, fmt(f[k], 4, true)))))))),
  ...list.filter((c) => c.warning).map((c) => el("div", { class: "warnings" }, c.warning)));
}

// ---- loading ----------------------------------------------------------------------------------
async function loadRuns() {
  const live = $("#live");
  try {
    const data = await getJson("/api/runs");
    state.runs = data.runs;
    $("#root").textContent = data.root;
    const warnings = data.warnings.concat(data.runs.flatMap((r) => r.warnings));
    $("#warnings").textContent = warnings.slice(0, 20).join("\n") + (warnings.length > 20 ? `\n… ${warnings.length - 20} more` : "");
    const ids = new Set(state.runs.map((r) => r.id));
    for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
    if (!state.chosen) for (const r of visibleRuns().slice(0, MAX_OVERLAY)) state.selected.add(r.id);
    live.className = "live on";
    $("#live-text").textContent = state.runs.some((r) => r.status === "running") ? "live · training" : "live";
  } catch (e) {
    live.className = "live err"; $("#live-text").textContent = "offline";
  }
  renderTable();
}
async function tick() {
  await loadRuns();
  await pollMetrics();
  renderCharts();
}
function init() {
  // "input" while typing; "change" and "search" also cover clearing (the field's x, WebDriver's clear).
  for (const ev of ["input", "change", "search"]) {
    $("#filter").addEventListener(ev, (e) => { if (state.filter !== e.target.value) { state.filter = e.target.value; renderTable(); } });
  }
  for (const th of document.querySelectorAll("#runs th[data-key]")) {
    th.addEventListener("click", () => {
      const k = th.dataset.key;
      state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : (k === "name" || k === "kind" || k === "status" ? 1 : -1) };
      renderTable();
    });
  }
  $("#select-all").addEventListener("change", (e) => {
    state.chosen = true;
    for (const r of visibleRuns().slice(0, MAX_OVERLAY)) if (e.target.checked) state.selected.add(r.id); else state.selected.delete(r.id);
    renderTable(); renderCharts(); pollMetrics();
  });
  tick().then(() => { const first = visibleRuns()[0]; if (first) focus(first.id); });
  setInterval(pollMetrics, 2000);
  setInterval(loadRuns, 5000);
}
document.addEventListener("DOMContentLoaded", init);
