// Draw-a-digit: pointer events (mouse, pen, touch) on a canvas, live predictions from
// POST /api/predict while drawing. Only same-origin requests; no libraries.
"use strict";

const pad = document.getElementById("pad");
const drawingPad = makePad(pad, (delay) => schedule(delay));   // pad.js
const barsEl = document.getElementById("bars");
const digitEl = document.getElementById("digit");
const probEl = document.getElementById("probability");
const statusEl = document.getElementById("status");
const seenEl = document.getElementById("seen");

const LIVE_MS = 120;         // at most one request in flight; the newest drawing wins

// --- the ten bars -------------------------------------------------------------------------
const bars = [];
for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.className = "bar";
  li.innerHTML = `<span class="label">${d}</span>` +
    `<span class="track"><span class="fill"></span></span><span class="pct">0%</span>`;
  barsEl.appendChild(li);
  bars.push({ li, fill: li.querySelector(".fill"), pct: li.querySelector(".pct") });
}

function showProbabilities(p, best) {
  p.forEach((v, d) => {
    bars[d].fill.style.width = `${(v * 100).toFixed(1)}%`;
    bars[d].pct.textContent = v >= 0.9995 ? "100%" : `${(v * 100).toFixed(1)}%`;
    bars[d].li.classList.toggle("best", d === best);
  });
}

function drawBoxes(data) {
  // One box per digit of a written number, in the drawing's own coordinates.
  const layer = document.getElementById("boxes");
  layer.replaceChildren();
  if (!data || !data.digits) return;
  // The picture lies on the canvas as pad.show() fitted it (a drawing fills it), inside the
  // canvas's border; the boxes are in the picture's pixels (data.size).
  const [h, w] = data.size;
  const [x0, y0, fw] = drawingPad.fit(w, h, pad.clientWidth, pad.clientHeight);
  const s = fw / w;
  const dx = pad.offsetLeft + pad.clientLeft + x0, dy = pad.offsetTop + pad.clientTop + y0;
  const place = ([top, left, bottom, right], text, kind) => {
    const box = document.createElement("div");
    box.className = kind;
    Object.assign(box.style, { left: `${dx + left * s}px`, top: `${dy + top * s}px`,
      width: `${(right - left) * s}px`, height: `${(bottom - top) * s}px` });
    const label = document.createElement("span");
    label.textContent = text;
    box.append(label);
    layer.append(box);
  };
  for (const d of data.digits) {
    place(d.bbox, `${d.digit} ${(d.probability * 100).toFixed(0)}%${d.unsure ? " ?" : ""}`, "box");
  }
  // the dots, colons and dashes between digits, which the number spells in place
  for (const m of data.marks || []) place(m.bbox, m.mark, "box mark");
}

function resetResult(message) {
  drawBoxes(null);
  digitEl.classList.remove("unsure", "long");
  showProbabilities(new Array(10).fill(0), -1);
  digitEl.textContent = "?";
  probEl.textContent = "–";
  seenEl.removeAttribute("src");
  seenEl.classList.add("empty");
  statusEl.textContent = message;
  statusEl.classList.remove("error");
}

document.getElementById("clear").addEventListener("click", () => {
  drawingPad.clear();
  pending = false;
  generation++;
  resetResult("draw something");
});

// --- predictions ---------------------------------------------------------------------------
// At most one drawing is being sent; the newest picture wins: Clear and an upload start a new
// generation (answers to older pictures are dropped), and an answer older than the one shown
// is never shown over it (requests are numbered when they start, before the PNG is encoded).
let timer = null;
let inFlight = false;
let pending = false;
let generation = 0;
let started = 0;     // requests started
let shown = 0;       // the newest request whose answer is on screen

function schedule(delay = LIVE_MS) {
  pending = true;
  clearTimeout(timer);
  timer = setTimeout(flush, delay);
}

function flush() {
  if (inFlight || !pending || !drawingPad.dirty) return;
  pending = false;
  inFlight = true;                     // encoding the PNG is part of the request
  const ticket = { gen: generation, seq: ++started };
  pad.toBlob((blob) => send(blob, { "Content-Type": "image/png" }, ticket), "image/png");
}

const current = (ticket) => ticket.gen === generation && ticket.seq > shown;

// drawing: a request flush() started (it set inFlight); an upload is sent beside it
async function send(body, headers, ticket, drawing = true) {
  statusEl.textContent = "thinking…";
  try {
    const res = await fetch("/api/predict", { method: "POST", body, headers });
    // a proxy's error page is not JSON: its status is the message
    const data = await res.json().catch(() => ({ detail: `error ${res.status}` }));
    if (!current(ticket)) return;
    shown = ticket.seq;
    if (!res.ok) {
      resetResult(data.detail || `error ${res.status}`);
      statusEl.classList.add("error");
      return;
    }
    showResult(data);
  } catch (err) {
    if (current(ticket)) {
      // the answer on screen would belong to an older picture
      resetResult(`server unreachable (${err.message})`);
      statusEl.classList.add("error");
    }
  } finally {
    if (drawing) {
      inFlight = false;
      if (pending) schedule(0);
    }
  }
}

function showResult(data) {
  drawBoxes(data);
  digitEl.classList.toggle("unsure", data.unsure === true);
  const unsure = data.unsure === true
    ? `unsure: ${data.unsure_reason || "the model is not confident"}; ` : "";
  probEl.textContent = `${(data.probability * 100).toFixed(1)}%`;
  statusEl.classList.remove("error");
  digitEl.classList.toggle("long", data.number !== undefined && data.number.length > 2);
  if (data.number !== undefined) {          // several digits: the number they spell
    digitEl.textContent = data.number;
    const least = data.digits.reduce((a, b) => (b.probability < a.probability ? b : a));
    showProbabilities(least.top.reduce((p, t) => { p[t.digit] = t.probability; return p; },
      new Array(10).fill(0)), least.digit);
    seenEl.src = data.digits_28_png[data.digits.indexOf(least)];
    const notes = data.notes && data.notes.length ? `; ${data.notes.join("; ")}` : "";
    const count = data.digits.length === 1 ? "1 digit" : `${data.digits.length} digits`;
    statusEl.textContent = `${unsure}${count} read left to right; ` +
      `bars: the least sure one${notes}`;
  } else {
    digitEl.textContent = String(data.digit);
    showProbabilities(data.probabilities, data.digit);
    seenEl.src = data.image_28_png;
    statusEl.textContent = unsure + (data.notes && data.notes.length ? data.notes.join("; ")
      : "updates as you draw");
  }
  seenEl.classList.remove("empty");
}

// --- upload --------------------------------------------------------------------------------
document.getElementById("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = "";  // choosing the same file again fires change again
  if (!file) return;
  generation++;
  pending = false;
  drawingPad.dirty = false;   // the server gets the file, not the canvas
  drawingPad.show(file);
  const form = new FormData();
  form.append("file", file);
  // sent at once, beside any drawing still in flight, whose answer is dropped
  await send(form, {}, { gen: generation, seq: ++started }, false);
});
// the label stands for the hidden file input: reachable and usable from the keyboard too
document.getElementById("upload-label").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    document.getElementById("upload").click();
  }
});

// --- start ---------------------------------------------------------------------------------
resetResult("draw something");
fetch("/healthz").then((r) => r.json()).then((h) => {
  document.getElementById("model").textContent = `model: ${h.model} · ${h.backend}`;
}).catch(() => {
  document.getElementById("model").textContent = "server unreachable";
});
