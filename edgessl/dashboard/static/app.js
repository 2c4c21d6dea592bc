// edgessl dashboard: draws what /events streams (JSON messages: one "snapshot", then "update"s).
// Hand-written, no framework, nothing loaded from the network. Read-only: it never sends anything back.
"use strict";

const PLOT_SECONDS = 10;
const MAX_ROWS = 50;
const COLORS = ["#cf222e", "#1a7f37", "#1f6feb", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a"];

const RETRY_MIN_MS = 2000, RETRY_MAX_MS = 10000;  // reconnecting: 2 s, 4 s, 8 s, then every 10 s
// the server sends at least an 'alive' event every 5 s: silence this long means a hung command or a dead link
// (a stopped process, Wi-Fi gone) whose connection the browser still holds open
const SILENT_MS = 12000, ASK_MS = 4000;

const state = {
  meta: { channels: [], units: [], labels: [], command: "" },
  t: [], x: [],            // plot points: device seconds and [value per channel]
  points: 0,               // plot points received
  samples: 0,              // samples the command received (samples_total)
  clockOffset: 0,          // server wall time minus this browser's
  prompt: null,
  device: "",              // the device's state (streaming, waiting, reconnecting ...)
  live: false,             // the page's stream is connected
  ended: false,            // the command said it ended
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
  const step = niceStep((hi - lo) / 4), digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks = $("plot").dataset;
  ticks.ticks = "";
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    const y = Y(v), label = (Math.abs(v) < step / 2 ? 0 : v).toFixed(digits);
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
    g.fillText(label, 4, y + 4);
    ticks.ticks += (ticks.ticks ? " " : "") + label;
  }
  // not streaming (waiting, unplugged, the command stopped, the page disconnected): the plot is frozen and grey,
  // its right edge is the last sample, not "now"
  const stale = !state.live || state.device !== "streaming";
  canvas.dataset.stale = String(stale);
  for (let s = 0; s <= PLOT_SECONDS; s += 2) {
    const x = X(tStart + s), end = s === PLOT_SECONDS;
    const text = end ? (stale ? "last sample" : "now") : `-${PLOT_SECONDS - s} s`;
    g.fillText(text, end ? x - g.measureText(text).width : x - 12, h - 4);
  }
  const nch = state.meta.channels.length;
  g.globalAlpha = stale ? 0.35 : 1;
  for (let c = 0; c < nch; c++) {
    g.strokeStyle = stale ? "#8c959f" : COLORS[c % COLORS.length]; g.lineWidth = 1.4; g.beginPath();
    let pen = false;
    for (let i = 0; i < n; i++) {
      const v = state.x[i][c];
      if (v === null || state.t[i] < tStart) { pen = false; continue; }
      if (pen) g.lineTo(X(state.t[i]), Y(v)); else g.moveTo(X(state.t[i]), Y(v));
      pen = true;
    }
    g.stroke();
  }
  g.globalAlpha = 1;
}

function niceStep(raw) {  // 1, 2 or 5 times a power of ten, at least raw
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

function setMeta(meta) {
  state.meta = meta;
  $("title").textContent = `edgessl ${meta.command || ""}`;
  const model = meta.model && meta.model.name ? ` · model ${meta.model.name}` : "";
  const device = meta.channels.length ? `${meta.channels.length} channels${meta.rate_hz ? ` at ${fmt(meta.rate_hz, 0)} Hz` : ""}`
    : "waiting for the board";
  $("subtitle").textContent = `${device}${model}`;
  const legend = $("legend");
  legend.replaceChildren();
  meta.channels.forEach((name, c) => {
    const sw = el("span", { className: "swatch" });
    sw.style.background = COLORS[c % COLORS.length];
    legend.append(el("li", {}, sw, `${name} (${meta.units[c] || "?"})`));
  });
  const hasModel = (meta.labels || []).length > 0;  // monitor without --model, record: the stream only
  for (const id of ["probs-panel", "adapt-panel", "events-panel"]) $(id).hidden = !hasModel;
  for (const id of ["h-latency", "h-unknown"]) {  // decisions' rows: only where a model decides
    $(id).hidden = !hasModel;
    $(id).previousElementSibling.hidden = !hasModel;
  }
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
  let extra = "";
  if (p.label === "unknown" && p.reason) {  // why: which gate, the value against its threshold
    extra = p.reason === "low confidence"
      ? `→ unknown: low confidence (${p.top} ${fmt(p.confidence, 2)} < ${fmt(p.gate, 2)})`
      : p.reason === "noise"
        ? `→ unknown: noise or vibration, not a movement (roughness ${fmt(p.roughness, 2)} > ${fmt(p.gate, 2)})`
        : `→ unknown: unlike training (${fmt(p.ood_score, 2)} > ${fmt(p.gate, 2)})`;
  } else if (p.label) {
    extra = `→ ${p.label}${p.confidence !== undefined ? `, confidence ${fmt(p.confidence, 2)}` : ""}`;
  }
  box.dataset.unknown = String(p.label === "unknown");
  $("probs-when").textContent = extra;
}

function setStatus(s) {
  if (!s) return;
  const d = s.device || {};
  state.device = d.state || "";
  const port = d.port ? ` ${d.port}` : "";
  const said = { waiting: `waiting for${port}`, opening: `opening${port}`, reconnecting: `reconnecting to${port} (unplugged?)`,
                 closed: "closed" };
  $("h-state").textContent = said[d.state] || d.state || "—";
  $("h-state").dataset.state = d.state || "";
  $("h-rate").textContent = d.rate_hz === undefined ? "—" : `${fmt(d.rate_hz, 1)} Hz${d.nominal_hz ? ` (device ${d.nominal_hz})` : ""}`;
  for (const k of ["delivered", "dropped", "rejected", "gaps", "reconnects"]) {
    $(`h-${k}`).textContent = d[k] === undefined ? "—" : String(d[k]);
  }
  if (d.gaps_text) $("h-gaps").textContent = d.gaps_text;  // why: "1 (unplugged 1)", as run's last line
  if (d.frames_refused) $("h-rejected").textContent += ` · frames refused ${d.frames_refused}`;
  const r = s.runtime || {};
  $("h-latency").textContent = r.latency_ms === undefined || r.latency_ms === null ? "—" : `${fmt(r.latency_ms, 2)} ms`;
  $("h-unknown").textContent = r.unknown === undefined ? "—"
    : `${r.unknown} (noise ${r.unknown_noise}, low confidence ${r.unknown_low_confidence}, unlike training ${r.unknown_out_of_distribution})`
      + (r.movements_too_short + r.movements_too_long + (r.movements_cut_off || 0) > 0
        ? ` · not classified ${r.movements_too_short + r.movements_too_long + (r.movements_cut_off || 0)} (${r.movements_too_short} too short, ${r.movements_too_long} too long`
          + (r.movements_cut_off ? `, ${r.movements_cut_off} under way at the start` : "") + ")"
        : "");
  const a = s.adaptation;
  if (a) {
    $("a-method").textContent = a.method;
    const w = a.gated !== undefined ? a : (a.parts || []).find((x) => x.gated !== undefined);
    $("a-updates").textContent = !w ? String(a.updates)
      : w.trial ? `${a.updates} (a change on trial: taken if the windows up to ${w.next_search} confirm it; ${w.gated} so far)`
      : a.updates === 0 ? `0 (the first search after ${w.next_search} windows that pass its gates; ${w.gated} so far)`
      : String(a.updates);
    $("a-resets").textContent = String(a.resets) + (w && w.drifts
      ? ` (and ${w.drifts} sudden change${w.drifts > 1 ? "s" : ""} of the signal, e.g. a remount: a new search each)` : "");
    const c = a.correction;
    $("a-correction").textContent = !c ? "none (this method has no input correction)"
      : `${c.active ? "active" : "inactive"}: rotation ${fmt(c.rotation_deg, 1)}°, gains ${c.gains.map((v) => fmt(v, 2)).join(" / ")}`;
  } else if (state.meta.command !== "record") {
    $("a-method").textContent = "none";
  }
  if (s.counts) setCounts(s.counts, s.wanted);
  if (s.output) {
    $("record-panel").hidden = false;
    $("output").textContent = `writing ${s.output}`;
  }
  if (s.takes) {
    $("takes").replaceChildren(...s.takes.slice().reverse().map((k) => el("li", {},
      `kept ${k.label} ${k.take}: ${fmt(k.duration_s, 2)} s${k.flags && k.flags.length ? ` (${k.flags.join(", ")})` : ""}`)));
  }
}

function setCounts(counts, wanted) {
  $("record-panel").hidden = false;
  const ul = $("counts");
  ul.replaceChildren();
  for (const [label, n] of Object.entries(counts)) {
    const w = wanted && typeof wanted === "object" ? wanted[label] : wanted; // per label in a retake round
    const li = el("li", {}, `${label} ${n}${w ? `/${w}` : ""}`);
    li.dataset.label = label;
    li.dataset.count = String(n);
    ul.append(li);
  }
}

function setPrompt(p) {
  state.prompt = p;
  if (!p) { $("prompt-text").textContent = "—"; $("countdown").textContent = ""; return; }
  if (p.state === "done") { $("prompt-text").textContent = "done: every class has its takes"; $("countdown").textContent = ""; return; }
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
    // this machine's clock, and the device's as run prints it (to match a line of the terminal or the log)
    const when = new Date(1000 * (e.end_wall || arrival)).toLocaleTimeString()
      + (e.t !== undefined && e.t !== null ? ` · ${fmt(e.t, 2)} s` : "");
    const noise = unknown && e.reason === "noise";  // the model is not asked: no confidence (as run prints it)
    const duration = e.window_end - e.window_start;
    const row = el("tr", { className: unknown ? "event unknown fresh" : "event fresh" },
      el("td", {}, when), label, el("td", {}, noise ? "—" : fmt(e.confidence, 2)), el("td", {}, noise ? "—" : fmt(e.ood_score, 2)),
      el("td", {}, `${fmt(e.latency_ms, 2)} ms`), el("td", {}, `${fmt(duration, 2)} s`));
    Object.assign(row.dataset, { label: e.label, arrival: String(arrival), endWall: String(e.end_wall ?? ""),
      confidence: String(e.confidence), reason: e.reason || "" });
    body.prepend(row);
  }
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

function setEventsTotal(n) {
  if (n === undefined) n = state.eventsTotal;
  if (n === undefined) return;
  state.eventsTotal = n;
  const shown = $("events").rows.length;
  // as run's last line counts them: gestures reported, and those answered unknown
  const u = state.unknownTotal;
  const split = u !== undefined && u <= n ? `: ${n - u} gesture${n - u === 1 ? "" : "s"}, ${u} unknown` : "";
  $("events-count").textContent = `${n} since the command started${split}${n > shown ? ` (the latest ${shown} shown)` : ""}`;
  $("events-count").dataset.count = String(n);
}

// -- a fresh page: every panel as before the first message (a new snapshot, perhaps of a new process) ------
function resetPage() {
  state.t = []; state.x = []; state.prompt = null; state.device = ""; state.eventsTotal = undefined; state.unknownTotal = undefined;
  $("probs").replaceChildren(el("p", { className: "empty" }, "no window classified yet"));
  $("probs").dataset.label = "";
  $("probs-when").textContent = "";
  for (const dd of document.querySelectorAll("#health dd, #adaptation dd")) { dd.textContent = "—"; dd.dataset.state = ""; }
  $("events").replaceChildren();
  $("events-count").textContent = "";
  $("events-count").dataset.count = "0";
  $("record-panel").hidden = true;
  for (const id of ["counts", "takes"]) $(id).replaceChildren();
  $("output").textContent = "";
  setPrompt(null);
}

// -- the stream -----------------------------------------------------------------------------------------
function apply(m) {
  if (m.wall) state.clockOffset = m.wall - Date.now() / 1000;
  if (m.type === "end") { ended(m.reason); return; }
  if (m.type === "snapshot") {
    resetPage();
    setMeta(m.meta);
    addPoints(m.t, m.x, true);
  } else {
    if (m.meta) setMeta(m.meta);
    addPoints(m.t, m.x, m.reset);
  }
  if ("status" in m) setStatus(m.status);
  if ("probabilities" in m) setProbs(m.probabilities);
  if ("prompt" in m) setPrompt(m.prompt);
  if (m.events) addEvents(m.events);
  if (m.unknown_total !== undefined) state.unknownTotal = m.unknown_total;  // counted with the total, in one message
  setEventsTotal(m.events_total);
  const s = $("samples");
  if (m.samples_total > state.samples || m.type === "snapshot") {
    // the count itself is the Device panel's "delivered"; here: when the plot last moved
    s.textContent = m.samples_total ? `last sample ${new Date().toLocaleTimeString()}` : "no samples yet";
  }
  state.samples = m.samples_total;
  s.dataset.samples = String(m.samples_total);
  s.dataset.points = String(state.points);
  drawPlot();
}

// -- the connection: our own retries (EventSource gives up for good on a 503), and why it is down -----------
// heard: the last word on this connection (or its start); lastWord: the last word from the command at all
let source = null, retryMs = RETRY_MIN_MS, retryTimer = null, heard = 0, lastWord = Date.now();

function setConn(st, text) {
  const conn = $("conn");
  conn.dataset.state = st;
  conn.textContent = text;
  state.live = st === "live";
  drawPlot();
}

function connect() {
  clearTimeout(retryTimer);
  source = new EventSource("/events");
  heard = Date.now();
  source.onopen = () => { heard = lastWord = Date.now(); retryMs = RETRY_MIN_MS; state.ended = false; setConn("live", "live"); };
  source.onmessage = (ev) => { heard = lastWord = Date.now(); apply(JSON.parse(ev.data)); };
  source.addEventListener("alive", () => { heard = lastWord = Date.now(); });
  source.onerror = () => { source.close(); source = null; retry(); };
}

function watchSilence() {
  if (source && !state.ended && Date.now() - heard > SILENT_MS) {
    source.close();
    source = null;
    const why = () => `the command is not answering (nothing for ${Math.round((Date.now() - lastWord) / 1000)} s)`;
    setConn("reconnecting", `${why()}; checking`);  // now, not after the check's own wait
    $("h-state").textContent = "— (no word from the command)";  // not "streaming": nobody knows
    $("h-state").dataset.state = "";
    retry(why);  // the back-off grows while it stays silent: 2 s, 4 s, 8 s, then every 10 s
  }
}

function ended(reason) {
  if (source) { source.close(); source = null; }
  state.ended = true;
  $("h-state").textContent = "stopped";
  $("h-state").dataset.state = "stopped";
  state.device = "stopped";
  setConn("stopped", reason || "stopped (the command ended)");
  retryMs = 5000;  // slowly: a new process may take its place (the page then starts fresh)
  retryTimer = setTimeout(connect, retryMs);
}

async function retry(silent) {
  let why = silent ? silent() : "connection lost";
  if (!state.ended) {
    const ask = new AbortController();
    const timer = setTimeout(() => ask.abort(), ASK_MS);  // a stopped process accepts and never answers
    try {
      const r = await fetch("/state", { cache: "no-store", signal: ask.signal });
      const st = r.ok ? await r.json() : null;
      if (st && st.pages >= st.max_pages) why = `too many pages open (${st.max_pages})`;
      else if (!r.ok) why = `the server answered ${r.status}`;
      else if (silent) why = "the command answers again";
    } catch (e) {
      why = silent ? silent() : "the command is not answering";
    } finally {
      clearTimeout(timer);
    }
  }
  const wait = state.ended ? Math.max(retryMs, 5000) : retryMs;
  if (state.ended) setConn("stopped", `stopped (the command ended); looking for a new one every ${wait / 1000} s`);
  else setConn("reconnecting", `${why}; retrying in ${Math.round(wait / 1000)} s`);
  retryTimer = setTimeout(connect, wait);
  retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
}

window.addEventListener("resize", drawPlot);
setInterval(tickCountdown, 250);
setInterval(watchSilence, 1000);
connect();
drawPlot();
