// edgessl dashboard: draws what /events streams (JSON messages: one "snapshot", then "update"s).
// Hand-written, no framework, nothing loaded from the network. Read-only: it never sends anything back.
"use strict";

const PLOT_SECONDS = 10;
const MAX_ROWS = 50;
const COLORS = ["#cf222e", "#1a7f37", "#1f6feb", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a"];

const state = {
  meta: { channels: [], units: [], labels: [], command: "" },
  t: [], x: [],            // plot points: device seconds and [value per channel]
  points: 0,               // plot points received
  events: 0,
  clockOffset: 0,          // server wall time minus this browser's
  prompt: null,
};

const $ = (id) => document.getElementById(id);
const fmt = (v, digits) => (v === null || v === undefined || Number.isNaN(v) ? "—" : Number(v).toFixed(digits));

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

// -- the plot -------------------------------------------------------------------------------------------
function drawPlot() {
  const canvas = $("plot");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 48, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  const n = state.t.length;
  const tEnd = n ? state.t[n - 1] : PLOT_SECONDS, tStart = tEnd - PLOT_SECONDS;
  let lo = Infinity, hi = -Infinity;
  for (const row of state.x) for (const v of row) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!Number.isFinite(lo)) { lo = -1; hi = 1; }
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const pad = 0.05 * (hi - lo);
  lo -= pad; hi += pad;
  const X = (t) => left + ((t - tStart) / PLOT_SECONDS) * pw;
  const Y = (v) => top + (1 - (v - lo) / (hi - lo)) * ph;
  g.strokeStyle = "#d0d7de"; g.fillStyle = "#656d76"; g.lineWidth = 1; g.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4, y = Y(v);
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
    g.fillText(v.toFixed(2), 4, y + 4);
  }
  for (let s = 0; s <= PLOT_SECONDS; s += 2) {
    const x = X(tStart + s);
    g.fillText(s === PLOT_SECONDS ? "now" : `-${PLOT_SECONDS - s} s`, s === PLOT_SECONDS ? x - 24 : x - 12, h - 4);
  }
  const nch = state.meta.channels.length;
  for (let c = 0; c < nch; c++) {
    g.strokeStyle = COLORS[c % COLORS.length]; g.lineWidth = 1.4; g.beginPath();
    let pen = false;
    for (let i = 0; i < n; i++) {
      const v = state.x[i][c];
      if (v === null || state.t[i] < tStart) { pen = false; continue; }
      if (pen) g.lineTo(X(state.t[i]), Y(v)); else g.moveTo(X(state.t[i]), Y(v));
      pen = true;
    }
    g.stroke();
  }
}

function setMeta(meta) {
  state.meta = meta;
  $("title").textContent = `edgessl ${meta.command || ""}`;
  const model = meta.model && meta.model.name ? ` · model ${meta.model.name}` : "";
  $("subtitle").textContent = `${meta.channels.length} channels${meta.rate_hz ? ` at ${fmt(meta.rate_hz, 0)} Hz` : ""}${model}`;
  const legend = $("legend");
  legend.replaceChildren();
  meta.channels.forEach((name, c) => {
    const sw = el("span", { className: "swatch" });
    sw.style.background = COLORS[c % COLORS.length];
    legend.append(el("li", {}, sw, `${name} (${meta.units[c] || "?"})`));
  });
  const hasModel = (meta.labels || []).length > 0;  // monitor without --model, record: the stream only
  for (const id of ["probs-panel", "adapt-panel", "events-panel"]) $(id).hidden = !hasModel;
}

function addPoints(t, x, reset) {
  if (reset) { state.t = []; state.x = []; }
  if (!t || !t.length) return;
  state.t.push(...t); state.x.push(...x);
  state.points += t.length;
  const cut = state.t[state.t.length - 1] - PLOT_SECONDS;
  let k = 0;
  while (k < state.t.length && state.t[k] < cut) k++;
  if (k) { state.t.splice(0, k); state.x.splice(0, k); }
}

// -- the panels -----------------------------------------------------------------------------------------
function setProbs(p) {
  const box = $("probs");
  if (!p) return;
  box.replaceChildren();
  box.dataset.label = p.label || "";
  const top = p.probs.indexOf(Math.max(...p.probs));
  p.labels.forEach((name, i) => {
    const bar = el("div", { className: "bar" });
    bar.style.width = `${(100 * p.probs[i]).toFixed(1)}%`;
    const row = el("div", { className: i === top ? "prob top" : "prob" },
      el("span", { className: "name", title: name }, name), el("div", { className: "track" }, bar),
      el("span", { className: "value" }, fmt(p.probs[i], 2)));
    row.dataset.label = name;
    row.dataset.p = String(p.probs[i]);
    box.append(row);
  });
  const extra = p.label ? `→ ${p.label}${p.confidence !== undefined ? `, confidence ${fmt(p.confidence, 2)}` : ""}` : "";
  $("probs-when").textContent = extra;
}

function setStatus(s) {
  if (!s) return;
  const d = s.device || {};
  $("h-state").textContent = d.state || "—";
  $("h-state").dataset.state = d.state || "";
  $("h-rate").textContent = d.rate_hz === undefined ? "—" : `${fmt(d.rate_hz, 1)} Hz${d.nominal_hz ? ` (device ${d.nominal_hz})` : ""}`;
  for (const k of ["delivered", "dropped", "rejected", "gaps", "reconnects"]) {
    $(`h-${k}`).textContent = d[k] === undefined ? "—" : String(d[k]);
  }
  const r = s.runtime || {};
  $("h-latency").textContent = r.latency_ms === undefined || r.latency_ms === null ? "—" : `${fmt(r.latency_ms, 2)} ms`;
  $("h-unknown").textContent = r.unknown === undefined ? "—"
    : `${r.unknown} (low confidence ${r.unknown_low_confidence}, unlike training ${r.unknown_out_of_distribution})`;
  const a = s.adaptation;
  if (a) {
    $("a-method").textContent = a.method;
    $("a-updates").textContent = String(a.updates);
    $("a-resets").textContent = String(a.resets);
    const c = a.correction;
    $("a-correction").textContent = !c ? "none (this method has no input correction)"
      : `${c.active ? "active" : "inactive"}: rotation ${fmt(c.rotation_deg, 1)}°, gains ${c.gains.map((v) => fmt(v, 2)).join(" / ")}`;
  } else if (state.meta.command !== "record") {
    $("a-method").textContent = "none";
  }
  if (s.counts) setCounts(s.counts, s.wanted);
}

function setCounts(counts, wanted) {
  $("record-panel").hidden = false;
  const ul = $("counts");
  ul.replaceChildren();
  for (const [label, n] of Object.entries(counts)) {
    const li = el("li", {}, `${label} ${n}${wanted ? `/${wanted}` : ""}`);
    li.dataset.label = label;
    li.dataset.count = String(n);
    ul.append(li);
  }
}

function setPrompt(p) {
  state.prompt = p;
  if (!p) { $("prompt-text").textContent = "—"; $("countdown").textContent = ""; return; }
  $("record-panel").hidden = false;
  const box = $("prompt");
  box.dataset.label = p.label || "";
  box.dataset.state = p.state || "";
  const what = { ready: "get ready", go: "GO", watch: "GO", kept: "kept", missed: "not seen, again", ask: "keep · redo?" };
  $("prompt-text").textContent = `${p.label} ${p.take}/${p.of} — ${what[p.state] || p.state}`;
  tickCountdown();
}

function tickCountdown() {
  const p = state.prompt;
  const left = p && p.state === "ready" && p.go_wall ? p.go_wall - (Date.now() / 1000 + state.clockOffset) : 0;
  $("countdown").textContent = left > 0 ? `${Math.ceil(left)}…` : "";
}

function addEvents(events) {
  const body = $("events");
  const arrival = Date.now() / 1000;
  for (const e of events) {
    const unknown = e.label === "unknown";
    const label = el("td", {}, e.label);
    if (unknown && e.reason) label.append(" ", el("span", { className: "reason" }, `(${e.reason})`));
    const when = new Date(1000 * (e.end_wall || arrival)).toLocaleTimeString();
    const row = el("tr", { className: unknown ? "event unknown fresh" : "event fresh" },
      el("td", {}, when), label, el("td", {}, fmt(e.confidence, 2)), el("td", {}, fmt(e.ood_score, 2)),
      el("td", {}, `${fmt(e.latency_ms, 2)} ms`), el("td", {}, `${fmt(e.window_start, 2)}–${fmt(e.window_end, 2)} s`));
    Object.assign(row.dataset, { label: e.label, arrival: String(arrival), endWall: String(e.end_wall ?? ""),
      confidence: String(e.confidence) });
    body.prepend(row);
    state.events += 1;
  }
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  $("events-count").textContent = `${state.events} this page`;
  $("events-count").dataset.count = String(state.events);
}

// -- the stream -----------------------------------------------------------------------------------------
function apply(m) {
  if (m.wall) state.clockOffset = m.wall - Date.now() / 1000;
  if (m.type === "snapshot") {
    setMeta(m.meta);
    addPoints(m.t, m.x, true);
    $("events").replaceChildren();
    state.events = 0;
  } else {
    if (m.meta) setMeta(m.meta);
    addPoints(m.t, m.x, m.reset);
  }
  if ("status" in m) setStatus(m.status);
  if ("probabilities" in m) setProbs(m.probabilities);
  if ("prompt" in m) setPrompt(m.prompt);
  if (m.events) addEvents(m.events);
  const s = $("samples");
  s.dataset.samples = String(m.samples_total);
  s.dataset.points = String(state.points);
  s.textContent = `${m.samples_total} samples`;
  drawPlot();
}

function connect() {
  const conn = $("conn");
  const es = new EventSource("/events");
  es.onopen = () => { conn.dataset.state = "live"; conn.textContent = "live"; };
  es.onerror = () => { conn.dataset.state = "reconnecting"; conn.textContent = "reconnecting…"; };
  es.onmessage = (ev) => apply(JSON.parse(ev.data));
}

window.addEventListener("resize", drawPlot);
setInterval(tickCountdown, 250);
connect();
drawPlot();
