// The console's pictures, drawn in the page with plain DOM and SVG (no library): class
// probability bars, number cells with a bar, confusion matrices (counts and row shares), the
// reliability diagram, the emotion timeline. Each one reads as text too (captions, labels,
// a table beside an SVG), and what is interactive is reachable with the keyboard.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) node.append(c instanceof Node ? c : document.createTextNode(c));
  return node;
}
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c));
  return node;
}
const pct = (v, digits = 1) => (v == null ? "–" : `${(100 * v).toFixed(digits)}%`);
const fixed = (v, digits = 3) => (v == null ? "–" : Number(v).toFixed(digits));
const secs = (v) => `${Number(v).toFixed(2)}`;

// Okabe–Ito: colours told apart with the common colour-vision deficiencies.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7f7f7f"];
function colours(classes) {
  const map = {};
  [...classes].sort().forEach((c, i) => { map[c] = PALETTE[i % PALETTE.length]; });
  return map;
}

// -- bars -----------------------------------------------------------------------------------
function chart(probabilities, label = "class probabilities") {
  const bars = el("div", { class: "bars", role: "list", "aria-label": label });
  const sorted = Object.entries(probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const bar = el("div", { class: "bar", role: "img", "aria-label": `${name} ${pct(p)}` }, el("span"));
    bar.firstChild.style.width = pct(p);
    bars.append(el("span", { role: "listitem" }, name), bar, el("span", {}, pct(p)));
  }
  return bars;
}
// A table cell holding a number and a bar of value / max under it.
function barCell(value, { max = 1, text } = {}) {
  const td = el("td", { class: "barcell" });
  td.append(el("span", { class: "value" }, text ?? fixed(value)));
  if (value != null) {
    const fill = el("span", { class: "fill" });
    fill.style.width = `${Math.max(0, Math.min(1, value / (max || 1))) * 100}%`;
    td.append(el("span", { class: "track", "aria-hidden": "true" }, fill));
  }
  return td;
}
function headRow(...names) {
  return el("thead", {}, el("tr", {}, ...names.map((n) => el("th", { scope: "col" }, n))));
}

// -- confusion matrices -----------------------------------------------------------------------
// Two tables: the counts, and each row as shares of its true class; cells shaded by share.
function confusionTables(matrix, classes, what) {
  const shares = matrix.map((row) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (total ? v / total : 0));
  });
  const one = (caption, cell, extra) => {
    const table = el("table", { class: "confusion" }, el("caption", {}, caption));
    table.append(headRow("true \\ predicted", ...classes, ...(extra ? [extra] : [])));
    const body = el("tbody");
    matrix.forEach((row, i) => {
      const tr = el("tr", {}, el("th", { scope: "row" }, classes[i]));
      row.forEach((v, j) => {
        const td = el("td", { class: i === j ? "diag" : "", "data-share": shares[i][j].toFixed(4) }, cell(v, shares[i][j]));
        td.style.background = `rgba(0, 90, 180, ${(0.08 + 0.85 * shares[i][j]).toFixed(3)})`;
        if (shares[i][j] > 0.55) td.classList.add("dark");
        tr.append(td);
      });
      if (extra) tr.append(el("td", {}, String(row.reduce((a, b) => a + b, 0))));
      body.append(tr);
    });
    table.append(body);
    return el("div", { class: "scroll" }, table);
  };
  return el("div", { class: "confusions" },
    one(`Confusion matrix, counts${what ? " (" + what + ")" : ""}`, (v) => String(v), "clips"),
    one(`Confusion matrix, share of the true class${what ? " (" + what + ")" : ""}`, (v, s) => pct(s, 0)));
}

// -- per-class, per-fold, per-speaker figures ---------------------------------------------------
function perClassTable(perClass, caption) {
  const table = el("table", { class: "figures per-class" }, el("caption", {}, caption));
  table.append(headRow("Class", "Precision", "Recall", "F1", "Clips"));
  const body = el("tbody");
  for (const [name, f] of Object.entries(perClass || {})) {
    body.append(el("tr", { "data-class": name }, el("th", { scope: "row" }, name),
      barCell(f.PRECISION), barCell(f.RECALL), barCell(f.F1), el("td", {}, String(f.SUPPORT))));
  }
  table.append(body);
  return el("div", { class: "scroll" }, table);
}
function foldTable(folds, nFolds, repeats, caption) {
  const perRepeat = repeats > 1 && nFolds ? Math.round(nFolds / repeats) : 0;
  const table = el("table", { class: "figures folds" }, el("caption", {}, caption));
  table.append(headRow("Fold", "F1-macro"));
  const body = el("tbody");
  folds.forEach((f, k) => {
    const name = perRepeat ? `shuffle ${Math.floor(k / perRepeat) + 1}, fold ${(k % perRepeat) + 1}` : `fold ${k + 1}`;
    body.append(el("tr", {}, el("th", { scope: "row" }, name), barCell(f)));
  });
  table.append(body);
  return el("div", { class: "scroll" }, table);
}
function speakerTable(perSpeaker, caption) {
  const table = el("table", { class: "figures speakers" }, el("caption", {}, caption));
  table.append(headRow("Speaker", "F1-macro", "Accuracy", "Clips"));
  const body = el("tbody");
  for (const [name, s] of Object.entries(perSpeaker)) {
    body.append(el("tr", { "data-speaker": name }, el("th", { scope: "row" }, name), barCell(s.F1), barCell(s.ACCURACY),
      el("td", {}, String(s.SUPPORT))));
  }
  table.append(body);
  return el("div", { class: "scroll" }, table);
}

// -- the reliability diagram -------------------------------------------------------------------
// Bars: each bin's accuracy; a dark tick: its mean confidence (a tick above the bar is
// over-confidence); the diagonal: perfect calibration. The bins as a table beside it.
let figureSeq = 0;
function reliabilityDiagram(bins, ece, what) {
  const id = `rel-${++figureSeq}`;
  const W = 300, H = 300, L = 44, B = 40, T = 10, R = 10;
  const x = (v) => L + v * (W - L - R), y = (v) => H - B - v * (H - B - T);
  const used = bins.filter((b) => b.COUNT > 0);
  const title = `Reliability diagram${what ? " (" + what + ")" : ""}: accuracy against confidence`
    + (ece == null ? "" : `, ECE ${fixed(ece)}`);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "reliability", role: "img", "aria-labelledby": id });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { x1: x(0), x2: x(1), y1: y(t), y2: y(t), class: "grid" }),
      svg("text", { x: L - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, t.toFixed(2)),
      svg("text", { x: x(t), y: H - B + 16, "text-anchor": "middle", class: "tick" }, t.toFixed(2)));
  }
  root.append(svg("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), class: "diagonal" }));
  for (const b of used) {
    const w = x(b.UPPER) - x(b.LOWER);
    const rect = svg("rect", { x: x(b.LOWER) + 1, width: Math.max(1, w - 2), y: y(b.ACCURACY), height: y(0) - y(b.ACCURACY), class: "bin" },
      svg("title", {}, `${fixed(b.LOWER, 2)}–${fixed(b.UPPER, 2)}: ${b.COUNT} clips, confidence ${fixed(b.CONFIDENCE)}, accuracy ${fixed(b.ACCURACY)}`));
    root.append(rect, svg("line", { x1: x(b.LOWER) + 1, x2: x(b.UPPER) - 1, y1: y(b.CONFIDENCE), y2: y(b.CONFIDENCE), class: "conf" }));
  }
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, "confidence (top-class probability)"),
    svg("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 12 ${(T + H - B) / 2})` }, "accuracy"));
  const table = el("table", { class: "figures" }, headRow("Confidence bin", "Clips", "Mean confidence", "Accuracy"));
  const body = el("tbody");
  for (const b of used) {
    body.append(el("tr", {}, el("th", { scope: "row" }, `${fixed(b.LOWER, 2)}–${fixed(b.UPPER, 2)}`), el("td", {}, String(b.COUNT)),
      el("td", {}, fixed(b.CONFIDENCE)), el("td", {}, fixed(b.ACCURACY))));
  }
  table.append(body);
  return el("figure", { class: "reliability-figure" }, root,
    el("figcaption", { id }, title),
    el("details", {}, el("summary", {}, "The bins as a table"), el("div", { class: "scroll" }, table)));
}

// -- the emotion timeline ----------------------------------------------------------------------
// The recording as a bar, its speech segments coloured by emotion (pauses left blank). A
// segment shows its probabilities on hover and on keyboard focus; the arrow keys, Home and End
// move between segments (one tab stop for the whole timeline).
function timeline(result) {
  const segments = result.SEGMENTS || [];
  const duration = result.DURATION || (segments.length ? segments[segments.length - 1].END : 0) || 1;
  const classes = Object.keys(result.PROBABILITIES || (segments[0] || {}).PROBABILITIES || result.SUMMARY || {});
  const colour = colours(classes);
  const id = `tl-${++figureSeq}`;
  const figure = el("figure", { class: "timeline" });
  const track = el("div", { class: "track", role: "list", "aria-label": `Emotion over time, ${duration.toFixed(1)} s; arrow keys move between segments` });
  const tip = el("div", { class: "tip", role: "tooltip", id: `${id}-tip`, hidden: true });
  const show = (node, seg) => {
    tip.replaceChildren(el("strong", {}, `${secs(seg.START)}–${secs(seg.END)} s: ${seg.EMOTION} ${pct(seg.PROBABILITY)}`),
      chart(seg.PROBABILITIES, `probabilities of the segment at ${secs(seg.START)} s`));
    tip.hidden = false;
    const left = node.offsetLeft + node.offsetWidth / 2;
    tip.style.left = `${Math.max(0, Math.min(left - tip.offsetWidth / 2, figure.clientWidth - tip.offsetWidth))}px`;
  };
  const hide = () => { tip.hidden = true; };
  // placed for the width it was shown at: a resize (a phone turned, a window narrowed) hides it
  window.addEventListener("resize", hide);
  let focused = null;  // [segment node, segment] that has the keyboard focus
  const items = segments.map((seg, i) => {
    const node = el("div", {
      class: "seg", role: "listitem", tabindex: i === 0 ? "0" : "-1", "data-emotion": seg.EMOTION,
      "aria-label": `${secs(seg.START)} to ${secs(seg.END)} seconds: ${seg.EMOTION} ${pct(seg.PROBABILITY)}`,
      "aria-describedby": `${id}-tip`,
    });
    node.style.left = `${(100 * seg.START) / duration}%`;
    node.style.width = `${(100 * (seg.END - seg.START)) / duration}%`;
    node.style.background = colour[seg.EMOTION] || "#555";
    node.addEventListener("mouseenter", () => show(node, seg));
    node.addEventListener("mouseleave", () => (focused ? show(...focused) : hide()));  // back to the focused one
    node.addEventListener("focus", () => { focused = [node, seg]; show(node, seg); });
    node.addEventListener("blur", () => { focused = null; hide(); });
    node.addEventListener("keydown", (e) => {
      const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: segments.length - 1 }[e.key];
      if (to == null || to < 0 || to >= segments.length) return;
      e.preventDefault();
      node.tabIndex = -1; items[to].tabIndex = 0; items[to].focus();
    });
    return node;
  });
  track.append(...items);
  const axis = el("div", { class: "axis", "aria-hidden": "true" });
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => duration / s <= 8) || 7200;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const tick = el("span", {}, t >= 60 ? `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}` : `${t} s`);
    tick.style.left = `${(100 * t) / duration}%`;
    axis.append(tick);
  }
  const legend = el("ul", { class: "legend", "aria-label": "speech time per emotion" });
  for (const [name, s] of Object.entries(result.SUMMARY || {}).sort((a, b) => b[1].SECONDS - a[1].SECONDS)) {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = colour[name] || "#555";
    legend.append(el("li", { "data-emotion": name }, swatch, `${name} ${fixed(s.SECONDS, 1)} s (${pct(s.SHARE, 0)})`));
  }
  const caption = segments.length
    ? `Emotion over time: ${segments.length} speech segment(s), ${fixed(result.SPEECH_SECONDS, 1)} s of speech in ${fixed(duration, 1)} s`
    : `No speech found in ${fixed(duration, 1)} s`;
  figure.append(el("figcaption", {}, caption), track, axis, tip, legend);
  return figure;
}
