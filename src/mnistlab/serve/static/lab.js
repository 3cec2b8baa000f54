// The lab: one drawing, several models (compare), inside the CNN, the runs and their curves.
// Only same-origin requests to the lab's JSON API (/api/lab/...); no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const drawingPad = makePad(pad, (delay) => schedule(delay));   // pad.js
const statusEl = $("status");
const LIVE_MS = 120;       // at most one request in flight; the newest drawing wins
const POLL_MS = 2000;      // a training run's history
const PALETTE = ["#4f46e5", "#d97706", "#059669", "#db2777", "#0891b2", "#7c3aed"];
const MAX_MODELS = 6;

const state = { runs: [], defaults: [], chosen: [], view: "compare", color: {},
                blob: null, generation: 0, runId: null, poll: null, showAll: {} };

// --- small helpers ---------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const pct = (p) => (p >= 0.9995 ? "100%" : `${(p * 100).toFixed(1)}%`);
// test accuracies: two decimals, where MNIST's models differ (99.79% is not 99.8%)
const acc = (p) => `${(p * 100).toFixed(2)}%`;
const runById = (id) => state.runs.find((r) => r.id === id);

async function getJSON(url, options) {
  const res = await fetch(url, options);
  // a proxy's error page is not JSON: its status is the message
  const body = await res.json().catch(() => ({ detail: `error ${res.status}` }));
  if (!res.ok) throw new Error(body.detail || `error ${res.status}`);
  return body;
}

function setStatus(text, error = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", error);
}

// --- views (#compare, #inside, #runs) --------------------------------------------------------
function showView(name) {
  if (!["compare", "inside", "runs"].includes(name)) name = "compare";
  state.view = name;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.dataset.view !== name; });
  document.querySelectorAll(".tabs a").forEach((a) => {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  $("drawing").hidden = name === "runs";
  if (name === "runs") refreshRuns();
  else { stopPolling(); if (state.blob) send(); }
}
window.addEventListener("hashchange", () => showView(location.hash.slice(1)));

// --- the pad (pad.js: drawing with mouse, pen or touch), clearing, pictures ------------------
// pending: the drawing changed since it was last sent; again: the picture or the models
// changed while a request was out, so it is sent once more when that one returns.
let timer = null, inFlight = false, pending = false, again = false;

function clearAll() {
  drawingPad.clear();
  state.blob = null;
  pending = false;
  state.generation++;
  resetResults();
  setStatus("draw something");
}
$("clear").addEventListener("click", clearAll);
pad.addEventListener("keydown", (ev) => {
  if (ev.key === "c" || ev.key === "Escape") { ev.preventDefault(); clearAll(); }
  if (ev.key === "s") { ev.preventDefault(); loadSample(); }
});
$("upload-label").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("upload").click(); }
});

let sampleIndex = 0;
async function loadSample() {
  const res = await fetch(`/api/lab/sample?index=${sampleIndex++ % 10000}`);
  if (!res.ok) { setStatus("no sample: the MNIST test set is not on this machine", true); return; }
  usePicture(await res.blob());
}
$("sample").addEventListener("click", loadSample);
$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  ev.target.value = "";
  if (file) usePicture(file);
});
function usePicture(blob) {
  drawingPad.show(blob);   // the server gets the original bytes
  state.generation++;
  state.blob = blob;
  send();
}

function schedule(delay = LIVE_MS) {
  pending = true;
  clearTimeout(timer);
  timer = setTimeout(flush, delay);
}
function flush() {
  if (inFlight || !pending || !drawingPad.dirty) return;
  pending = false;
  inFlight = true;                       // encoding the PNG is part of the request
  const gen = state.generation;          // the drawing as it is now
  pad.toBlob((blob) => {
    inFlight = false;
    if (gen === state.generation) { state.blob = blob; send(); }
    else if (again || pending) { again = false; send(); }   // replaced meanwhile: send that
  }, "image/png");
}

async function send() {
  if (!state.blob || state.view === "runs") return;
  if (inFlight) { again = true; return; }
  inFlight = true;
  const gen = state.generation, view = state.view;
  setStatus("thinking…");
  try {
    const headers = { "Content-Type": state.blob.type || "image/png" };
    if (view === "compare") {
      if (!state.chosen.length) { resetResults(); setStatus("pick a model"); return; }
      const q = state.chosen.map((id) => `models=${encodeURIComponent(id)}`).join("&");
      const data = await getJSON(`/api/lab/compare?${q}`, { method: "POST", body: state.blob, headers });
      if (gen === state.generation) showCompare(data);
    } else {
      const q = new URLSearchParams({ saliency: $("saliency-method").value });
      if ($("cnn-select").value) q.set("cnn", $("cnn-select").value);
      if ($("fc-select").value) q.set("fc", $("fc-select").value);
      const data = await getJSON(`/api/lab/inside?${q}`, { method: "POST", body: state.blob, headers });
      if (gen === state.generation) showInside(data);
    }
    if (gen === state.generation) setStatus("updates as you draw");
  } catch (err) {
    // the answers on screen would belong to an earlier picture: cleared, as the draw page does
    if (gen === state.generation) { resetResults(); setStatus(err.message, true); }
  } finally {
    inFlight = false;
    if (pending && drawingPad.dirty) { again = false; schedule(0); }   // the drawing moved on
    else if (again) { again = false; send(); }         // a picture or the models changed
  }
}

// --- compare ---------------------------------------------------------------------------------
function buildPicker() {
  const picker = $("picker");
  picker.replaceChildren();
  const usable = state.runs.filter((r) => r.status !== "training" || r.epochs_done > 0);
  state.chosen.forEach(colorFor);
  for (const r of usable) {
    const box = el("input", { type: "checkbox", value: r.id });
    box.checked = state.chosen.includes(r.id);
    const shown = r.test_accuracy == null ? r.status : acc(r.test_accuracy);
    const label = el("label", { style: `--swatch:${state.color[r.id] || NEUTRAL}` }, box,
                     el("span", { class: "swatch" }), `${r.id} `, el("small", {}, shown));
    label.classList.toggle("on", box.checked);
    box.addEventListener("change", () => {
      if (box.checked && state.chosen.length >= MAX_MODELS) {
        box.checked = false;
        setStatus(`at most ${MAX_MODELS} models at once: untick one first`, true);
        return;
      }
      state.chosen = box.checked ? [...state.chosen, r.id] : state.chosen.filter((x) => x !== r.id);
      if (!box.checked) delete state.color[r.id];
      label.style.setProperty("--swatch", box.checked ? colorFor(r.id) : NEUTRAL);
      label.classList.toggle("on", box.checked);
      buildColumns();
      send();
    });
    picker.append(label);
  }
  if (!usable.length) picker.append(el("p", { class: "hint" }, "No runs found under runs/ or report/runs: train one, e.g. `mnistlab train cnn`."));
}

// A chosen model keeps its colour while chosen; a newly chosen one takes the first colour no
// other chosen model has, so up to MAX_MODELS columns never share one.
const NEUTRAL = "#c7cbe0";
function colorFor(id) {
  if (!state.color[id]) {
    const taken = new Set(state.chosen.filter((x) => x !== id).map((x) => state.color[x]));
    state.color[id] = PALETTE.find((c) => !taken.has(c)) || PALETTE[0];
  }
  return state.color[id];
}

function bars(list) {
  const items = [];
  for (let d = 0; d < 10; d++) {
    const fill = el("span", { class: "fill" });
    const pctEl = el("span", { class: "pct" }, "0%");
    const li = el("li", { class: "bar" }, el("span", { class: "label" }, String(d)),
                  el("span", { class: "track" }, fill), pctEl);
    list.append(li);
    items.push({ li, fill, pct: pctEl });
  }
  return items;
}

const columns = {};
function buildColumns() {
  const grid = $("compare-grid");
  grid.replaceChildren();
  for (const id of state.chosen) {
    const r = runById(id) || { id, model: "?", family: "?" };
    const digit = el("b", {}, "?"), prob = el("span", {}, "–");
    const list = el("ol", { class: "bars", "aria-label": `${id}: probability of each digit` });
    const col = el("div", { class: "model-col", "data-id": id, style: `--swatch:${state.color[id] || PALETTE[0]}` },
      el("h3", {}, id),
      el("div", { class: "meta" }, `${r.family.toUpperCase()} · ${r.model}` +
         (r.test_accuracy != null ? ` · test ${acc(r.test_accuracy)}` : "")),
      el("div", { class: "answer" }, digit, prob), list);
    columns[id] = { digit, prob, items: bars(list) };
    grid.append(col);
  }
}

function resetResults() {
  for (const c of Object.values(columns)) {
    c.digit.textContent = "?"; c.prob.textContent = "–";
    c.items.forEach((b) => { b.fill.style.width = "0%"; b.pct.textContent = "0%"; b.li.className = "bar"; });
  }
  const v = $("verdict");
  v.textContent = "Draw a digit to compare."; v.className = "verdict";
  buildSpread(new Array(10).fill(0));
  $("blocks").replaceChildren(el("p", { class: "hint" }, "Draw a digit to see what each conv block makes of it."));
  for (const id of ["saliency", "template"]) $(id).getContext("2d").clearRect(0, 0, 28, 28);
  $("inside-answer").textContent = "";
}

function buildSpread(spread) {
  const ol = $("spread");
  ol.replaceChildren();
  spread.forEach((s, d) => {
    ol.append(el("li", { title: `digit ${d}: ${pct(s)}` },
      el("div", { class: "col" }, el("span", { style: `height:${(s * 100).toFixed(1)}%` })), String(d)));
  });
}

function showCompare(data) {
  for (const u of data.unusable || []) {      // a chosen model that cannot answer: it says why
    const c = columns[u.id];
    if (!c) continue;
    c.digit.textContent = "–"; c.prob.textContent = "cannot answer";
    c.items.forEach((b) => { b.fill.style.width = "0%"; b.pct.textContent = ""; b.li.className = "bar"; });
  }
  for (const m of data.models) {
    const c = columns[m.id];
    if (!c) continue;
    c.digit.textContent = String(m.digit);
    c.prob.textContent = pct(m.probability);
    m.probabilities.forEach((p, d) => {
      const b = c.items[d];
      b.fill.style.width = `${(p * 100).toFixed(1)}%`;
      b.pct.textContent = pct(p);
      b.li.classList.toggle("best", d === m.digit);
      b.li.classList.toggle("contested", data.disagreement.spread[d] > 0.2);
    });
  }
  const v = $("verdict"), d = data.disagreement;
  if (data.models.length < 2) {
    v.textContent = `${data.models[0].id} says ${data.models[0].digit}`; v.className = "verdict";
  } else if (d.agree) {
    v.textContent = `All ${data.models.length} models say ${d.digits[0]} · largest gap between two models: ${pct(d.max_total_variation)}`;
    v.className = "verdict agree";
  } else {
    v.textContent = "They disagree: " + data.models.map((m) => `${m.id} says ${m.digit} (${pct(m.probability)})`).join(" · ");
    v.className = "verdict disagree";
  }
  if ((data.unusable || []).length) {
    v.textContent += " · " + data.unusable.map((u) => `${u.id} cannot answer: ${u.detail}`).join(" · ");
  }
  buildSpread(d.spread);
}

// --- inside the CNN --------------------------------------------------------------------------
function fillSelects() {
  const fill = (sel, family) => {
    const keep = sel.value;
    sel.replaceChildren();
    const runs = state.runs.filter((r) => r.family === family && r.epochs_done + (r.status === "finished") > 0);
    for (const r of runs) sel.append(el("option", { value: r.id }, r.id));
    const pick = runs.find((r) => r.id === keep) || runs.find((r) => state.defaults.includes(r.id)) || runs[0];
    if (pick) sel.value = pick.id;
    sel.disabled = !runs.length;
  };
  fill($("cnn-select"), "cnn");
  fill($("fc-select"), "fc");
}
for (const id of ["cnn-select", "fc-select", "saliency-method"]) $(id).addEventListener("change", () => send());

// Colour maps: feature maps on a dark-to-warm ramp; signed maps red (+) / blue (-).
function ramp(t) {
  t = Math.max(0, Math.min(1, t));
  const r = Math.round(255 * Math.min(1, 1.6 * t)), g = Math.round(255 * Math.max(0, 1.4 * t - 0.4));
  const b = Math.round(255 * Math.max(0, 0.5 - t) + 200 * Math.max(0, t - 0.8));
  return [r, g, b];
}
function paint(canvas, rows, color) {
  const h = rows.length, w = rows[0].length;
  canvas.width = w; canvas.height = h;
  const c = canvas.getContext("2d"), img = c.createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = color(rows[y][x], y, x), i = 4 * (y * w + x);
    img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b; img.data[i + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}
function signed(v, scale, base = 0) {
  const t = scale > 0 ? Math.max(-1, Math.min(1, v / scale)) : 0, g = Math.round(60 * base);
  return t >= 0 ? [g + Math.round(195 * t), g, g] : [g, g + Math.round(80 * -t), g + Math.round(195 * -t)];
}

function showInside(data) {
  const a = data.cnn;
  $("inside-answer").textContent = `${a.id} says ${a.digit} (${pct(a.probability)})` +
    (data.fc ? ` · ${data.fc.id} says ${data.fc.digit} (${pct(data.fc.probability)})` : "");
  const s = data.saliency, img = data.image_28;
  const sMax = Math.max(1e-9, ...s.values.flat().map(Math.abs));
  paint($("saliency"), s.values, (v, y, x) => signed(v, sMax, img[y][x]));
  $("saliency-caption").textContent = `${s.method === "occlusion" ? "Occlusion" : "Input gradient"} for digit ${s.target}: ${s.description}.`;
  const t = data.fc_template;
  if (t) {
    paint($("template"), t.values, (v) => signed(v, t.scale));
    $("template-caption").textContent = `${t.id}'s template for ${t.digit} (its answer): ${t.description}. Red: ink here raises the score; blue: lowers it.`;
  } else {
    $("template").getContext("2d").clearRect(0, 0, 28, 28);
    $("template-caption").textContent = "no FC run found";
  }
  const box = $("blocks");
  box.replaceChildren();
  for (const b of data.blocks) {
    const peak = Math.max(1e-9, ...b.maps.map((m) => m.peak));
    const shown = state.showAll[b.index] ? b.maps : b.maps.slice(0, 24);
    const grid = el("div", { class: "maps" });
    for (const m of shown) {
      const c = el("canvas", { title: `channel ${m.channel}: mean ${m.mean.toFixed(3)}, peak ${m.peak.toFixed(3)}` });
      paint(c, m.values, (v) => ramp(v / peak));
      grid.append(c);
    }
    const block = el("div", { class: "block", "data-block": String(b.index) },
      el("h3", {}, `Block ${b.index} `, el("small", {}, `${b.channels} maps of ${b.height}×${b.width}` +
        (shown.length < b.maps.length ? ` · the ${shown.length} most active` : ""))), grid);
    if (b.maps.length > 24) {
      block.append(el("button", { type: "button", class: "secondary more", onclick: () => {
        state.showAll[b.index] = !state.showAll[b.index]; showInside(data);
      } }, state.showAll[b.index] ? "show fewer" : `show all ${b.maps.length}`));
    }
    box.append(block);
  }
}

// --- runs ------------------------------------------------------------------------------------
function fmtSeconds(s) {
  if (s == null) return "–";
  return s < 90 ? `${s.toFixed(1)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

async function loadRuns() {
  const data = await getJSON("/api/lab/runs");
  state.runs = data.runs;
  state.defaults = data.defaults;
  $("report-link").hidden = $("report-sep").hidden = !data.report;
  return data;
}

async function refreshRuns() {
  try { await loadRuns(); } catch (err) { $("runs-hint").textContent = err.message; return; }
  const body = $("runs-table").querySelector("tbody");
  body.replaceChildren();
  for (const r of state.runs) {
    const open = el("button", { type: "button", onclick: () => openRun(r.id) }, r.id);
    const tr = el("tr", { "data-id": r.id },
      el("td", {}, open), el("td", {}, `${r.model} (${r.family})`), el("td", {}, r.preset || "–"),
      el("td", {}, r.dataset), el("td", {}, r.test_accuracy == null ? "–" : acc(r.test_accuracy)),
      el("td", {}, r.created ? r.created.slice(0, 16).replace("T", " ") : "–"),
      el("td", {}, fmtSeconds(r.train_seconds)),
      el("td", { class: `status-${r.status}` },
         r.status === "finished" ? "finished" : `${r.status} ${r.epochs_done}/${r.epochs_planned ?? "?"}`));
    tr.classList.toggle("selected", r.id === state.runId);
    body.append(tr);
  }
  $("runs-hint").textContent = `${state.runs.length} found in runs/ and report/runs`;
  if (!state.runs.length) body.append(el("tr", {}, el("td", { colspan: "8" }, "No runs yet: `mnistlab train cnn` makes one.")));
}

function stopPolling() { clearTimeout(state.poll); state.poll = null; }

async function openRun(id) {
  stopPolling();
  state.runId = id;
  document.querySelectorAll("#runs-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const box = $("run-detail");
  box.hidden = false;
  $("run-title").textContent = id;
  $("confusion").replaceChildren();
  $("confusion-hint").textContent = "computing on the test set…";
  try {
    const detail = await getJSON(`/api/lab/runs/${encodeURIComponent(id)}`);
    drawHistory(detail.history);
    if (detail.run.family === "ensemble") {
      const t = detail.train, n = t.members.length;
      const how = t.selection === "validation" ? "members, weights, shifts and temperature chosen on validation"
        : "nothing chosen: its members averaged as saved";
      $("run-status").textContent = `ensemble of ${n} run${n === 1 ? "" : "s"} (${t.members.join(", ")}), ` +
        `${t.shifts.length > 1 ? "with" : "no"} test-time shifts; ${how}`;
      const own = "an ensemble: its members have the curves";
      plot($("curve-acc"), [], ["train_accuracy"], 100, null, own);
      plot($("curve-loss"), [], ["train_loss"], 1, null, own);
    }
    box.scrollIntoView({ block: "nearest" });
  } catch (err) { $("run-status").textContent = err.message; return; }
  getJSON(`/api/lab/runs/${encodeURIComponent(id)}/confusion`)
    .then((c) => { if (state.runId === id) drawConfusion(c); })
    .catch((err) => { if (state.runId === id) $("confusion-hint").textContent = err.message; });
}

function drawHistory(h) {
  $("run-status").textContent = h.status === "training"
    ? `training: epoch ${h.epochs_done} of ${h.epochs_planned ?? "?"} (updates every ${POLL_MS / 1000} s)`
    : `${h.status}, ${h.epochs_done} epoch${h.epochs_done === 1 ? "" : "s"}`;
  const rows = h.rows;
  plot($("curve-acc"), rows, ["train_accuracy", "test_accuracy"], 100, h.epochs_planned);
  plot($("curve-loss"), rows, ["train_loss", "test_loss"], 1, h.epochs_planned);
  if (h.status === "training" && state.view === "runs") {
    state.poll = setTimeout(async () => {
      if (state.runId !== h.id) return;
      try { drawHistory(await getJSON(`/api/lab/runs/${encodeURIComponent(h.id)}/history`)); }
      catch (err) { $("run-status").textContent = err.message; }
    }, POLL_MS);
  }
}

// The inline <svg> elements carry the SVG namespace: new shapes take theirs.
const SVGNS = document.getElementById("curve-acc").namespaceURI;
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function plot(root, rows, keys, scale, planned, empty = "no finished epoch yet") {
  root.replaceChildren();
  const W = 360, H = 220, L = 42, R = 10, T = 10, B = 28;
  const pts = keys.map((k) => rows.filter((r) => r[k] != null).map((r) => [r.epoch, r[k] * scale]));
  const ys = pts.flat().map((p) => p[1]);
  if (!ys.length) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    t.textContent = empty;
    root.append(t);
    return;
  }
  const nMax = Math.max(planned || 1, ...rows.map((r) => r.epoch), 2);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const x = (e) => L + ((e - 1) / (nMax - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (i / 4) * (hi - lo);
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const t = svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" });
    t.textContent = v.toFixed(scale === 100 ? 1 : 2);
    root.append(t);
  }
  const step = Math.max(1, Math.ceil(nMax / 8));
  for (let e = 1; e <= nMax; e += step) {
    const t = svg("text", { x: x(e), y: H - 10, "text-anchor": "middle" });
    t.textContent = String(e);
    root.append(t);
  }
  root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  keys.forEach((k, i) => {
    const cls = i === 0 ? "train" : "test", p = pts[i];
    if (!p.length) return;
    root.append(svg("polyline", { points: p.map(([e, v]) => `${x(e)},${y(v)}`).join(" "), class: cls }));
    for (const [e, v] of p) root.append(svg("circle", { cx: x(e), cy: y(v), r: 3, class: cls }));
  });
}

function drawConfusion(c) {
  const table = $("confusion");
  table.replaceChildren();
  const max = Math.max(...c.matrix.flat());
  const head = el("tr", {}, el("th", {}, "true \\ pred"));
  for (let p = 0; p < 10; p++) head.append(el("th", {}, String(p)));
  table.append(head);
  c.matrix.forEach((row, t) => {
    const tr = el("tr", {}, el("th", {}, String(t)));
    row.forEach((n, p) => {
      // Log scale, as in the report: the few errors show beside ~1,000 correct.
      const a = n ? Math.log(1 + n) / Math.log(1 + max) : 0;
      const bg = t === p ? `rgba(79,70,229,${0.12 + 0.8 * a})` : n ? `rgba(220,38,38,${0.15 + 0.75 * a})` : "#f9fafb";
      tr.append(el("td", { style: `background:${bg};color:${a > 0.6 ? "#fff" : "#1b1f27"}`,
                           title: `true ${t}, predicted ${p}: ${n}` }, n ? String(n) : ""));
    });
    table.append(tr);
  });
  $("confusion-hint").textContent = `${c.images.toLocaleString()} ${c.dataset} test images · accuracy ${acc(c.accuracy)}`;
}

// --- start -----------------------------------------------------------------------------------
loadRuns().then(() => {
  state.chosen = state.defaults.slice(0, MAX_MODELS);
  buildPicker();
  buildColumns();
  fillSelects();
  resetResults();
  showView(location.hash.slice(1));
}).catch((err) => setStatus(`server unreachable (${err.message})`, true));
