// The drawing pad both pages share (index.html, lab.html): a canvas to draw a digit on with a
// mouse, a pen or a finger (pointer events), which can also show an uploaded picture.
//
//   const drawing = makePad(canvas, onChange);   // onChange(delay?) after each change
//   drawing.clear(); drawing.show(blob); drawing.dirty   // true once drawn on since clear()
//   drawing.fit(w, h, boxW, boxH)                        // where show() puts a w x h picture
"use strict";

function makePad(canvas, onChange) {
  const INK = "#111418";
  const PAPER = "#ffffff";
  const BRUSH = 24;          // px on the 280 px canvas: 1/8 of a 190 px digit, as in MNIST
  const ctx = canvas.getContext("2d");
  const pad = { dirty: false };
  let drawing = false;
  let last = null;

  pad.clear = () => {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    pad.dirty = false;
  };

  pad.show = (blob) => {
    // The picture, scaled to fit; the server gets the original bytes, not the canvas.
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      pad.clear();
      const [x, y, w, h] = pad.fit(img.width, img.height, canvas.width, canvas.height);
      ctx.drawImage(img, x, y, w, h);
      URL.revokeObjectURL(url);
    };
    // not a picture the browser can show: a blank page, not the last picture left standing
    img.onerror = () => { pad.clear(); URL.revokeObjectURL(url); };
    img.src = url;
  };

  // Where a picture of width w and height h lies when fitted, centred, into a box of width
  // bw and height bh: [left, top, width, height]. Boxes over a picture use the same fit.
  pad.fit = (w, h, bw, bh) => {
    const s = Math.min(bw / w, bh / h);
    return [(bw - w * s) / 2, (bh - h * s) / 2, w * s, h * s];
  };

  function point(ev) {
    const r = canvas.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * (canvas.width / r.width),
             y: (ev.clientY - r.top) * (canvas.height / r.height) };
  }

  function stroke(from, to) {
    Object.assign(ctx, { strokeStyle: INK, fillStyle: INK, lineWidth: BRUSH, lineCap: "round",
                         lineJoin: "round" });
    ctx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      // a tap: browsers paint nothing for a line of no length, and a decimal point is one
      ctx.arc(from.x, from.y, BRUSH / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  canvas.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    drawing = true;
    last = point(ev);
    stroke(last, last);  // a tap leaves a dot
    pad.dirty = true;
    onChange();
  });

  canvas.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    // Coalesced events keep fast strokes smooth on high-rate pointers.
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of (events.length ? events : [ev])) {
      const p = point(e);
      stroke(last, p);
      last = p;
    }
    pad.dirty = true;
    onChange();
  });

  function endStroke() {
    if (!drawing) return;
    drawing = false;
    onChange(0);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  pad.clear();
  return pad;
}
