// The web console: calls the public API of this origin like any client (no library, no CDN).
"use strict";

const KEY = "ser-api-key";  // sessionStorage: the key lives as long as this tab
const FOLLOW_WAIT = 2;      // seconds each GET /jobs/<id>?wait= holds while a job runs
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

// -- the API key: asked for once (on the first 401), kept for the tab ----------------------
let keyWaiters = [];
function askForKey(message) {
  const dialog = $("#key-dialog");
  $("#key-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
  return new Promise((resolve) => keyWaiters.push(resolve));
}
function keyGiven(event) {
  event.preventDefault();
  const value = $("#key-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(KEY, value);
  $("#key-dialog").close();
  const waiters = keyWaiters; keyWaiters = [];
  waiters.forEach((resolve) => resolve());
}

async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", "Bearer " + key);
    const resp = await fetch(path, { ...options, headers });
    if (resp.status !== 401) return resp;
    await askForKey(key ? "That key was refused; try again." : "");
  }
}
async function json(path, options) {
  const resp = await api(path, options);
  const body = await resp.json().catch(() => ({}));
  return { status: resp.status, body };
}
const errorText = (r) => (r.body.ERROR ? `${r.body.ERROR.CODE}: ${r.body.ERROR.MESSAGE}` : `HTTP ${r.status}`);
const ACTIVE = new Set(["QUEUED", "RUNNING"]);

// A job followed to its end: GET /jobs/<id>?wait= holds until it ends or FOLLOW_WAIT passes.
async function follow(jobId, onUpdate) {
  for (;;) {
    const r = await json(`/jobs/${jobId}?wait=${FOLLOW_WAIT}`);
    if (r.status !== 200) return r.body;
    onUpdate && onUpdate(r.body);
    if (!ACTIVE.has(r.body.JOB_STATUS)) return r.body;
  }
}
function seconds(job) {
  if (!job.CREATED_AT || !job.FINISHED_AT) return "";
  const s = (Date.parse(job.FINISHED_AT) - Date.parse(job.CREATED_AT)) / 1000;
  return isNaN(s) ? "" : `${s.toFixed(2)} s`;
}
async function download(path, filename) {
  const resp = await api(path);
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: filename });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// -- header: health and readiness (public probes), every 10 s -------------------------------
async function probes() {
  for (const [id, path, label] of [["#health", "/health", "Health"], ["#ready", "/ready", "Ready"]]) {
    const node = $(id);
    try {
      const resp = await fetch(path);
      const body = await resp.json();
      const ok = resp.status === 200;
      node.dataset.state = ok ? "ok" : "bad";
      node.textContent = id === "#health"
        ? `${label}: ${ok ? "OK" : "unavailable"} · Redis ${body.REDIS ? "up" : "down"} · ${body.WORKERS} worker(s)`
        : `${label}: ${ok ? "yes" : "not yet"}`;
    } catch (e) {
      node.dataset.state = "bad"; node.textContent = `${label}: unreachable`;
    }
  }
}

// -- Try it -------------------------------------------------------------------------------------
function chart(probabilities) {
  const bars = el("div", { class: "bars", role: "list", "aria-label": "class probabilities" });
  const sorted = Object.entries(probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const pct = (100 * p).toFixed(1);
    const bar = el("div", { class: "bar", role: "img", "aria-label": `${name} ${pct}%` }, el("span"));
    bar.firstChild.style.width = `${pct}%`;
    bars.append(el("span", { role: "listitem" }, name), bar, el("span", {}, `${pct}%`));
  }
  return bars;
}
async function predictOne(file, speaker) {
  const item = el("li", { class: "clip" }, el("strong", {}, file.name), el("p", { class: "meta" }, "sending…"));
  $("#clips").prepend(item);
  const form = new FormData();
  form.append("file", file, file.name);
  if (speaker) form.append("speaker", speaker);
  let r = await json("/predict?wait=30", { method: "POST", body: form });
  let job = r.body;
  if (r.status === 202) job = await follow(job.JOB_ID);
  item.querySelector(".meta").remove();
  if (job.JOB_STATUS !== "SUCCEEDED") {
    item.append(el("p", { class: "error" }, job.ERROR ? `${job.ERROR.CODE}: ${job.ERROR.MESSAGE}` : errorText(r)));
    return;
  }
  item.append(
    el("p", { class: "emotion" }, `${job.EMOTION} (${(100 * job.PROBABILITY).toFixed(1)}%)`),
    chart(job.PROBABILITIES),
    el("p", { class: "meta" }, `model ${job.MODEL_VERSION} · job ${job.JOB_ID.slice(0, 8)} · ${seconds(job)}`
      + (job.SPEAKER ? ` · speaker ${job.SPEAKER}${job.ADAPTED ? " (adapted)" : ""}` : "")),
  );
}
function predictFiles(files) {
  $("#try-message").textContent = "";
  const speaker = $("#try-speaker").value.trim();
  const wanted = [...files].filter((f) => /\.(wav|flac|ogg)$/i.test(f.name) || f.type.startsWith("audio/"));
  if (!wanted.length) { $("#try-message").textContent = "Choose WAV, FLAC or OGG files."; return; }
  wanted.forEach((f) => predictOne(f, speaker));
}

// The microphone: MediaRecorder's compressed recording, decoded by the browser and sent as a
// 16-bit mono WAV (a format the service decodes, whatever the browser records in).
let recorder = null;
async function toggleRecording() {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    $("#try-message").textContent = `Microphone: ${e.message}`;
    return;
  }
  const chunks = [], button = $("#rec"), started = performance.now();
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  const timer = setInterval(() => {
    $("#rec-status").textContent = `recording ${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 250);
  recorder.onstop = async () => {
    clearInterval(timer);
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "Record from the microphone";
    button.setAttribute("aria-pressed", "false");
    $("#rec-status").textContent = "";
    const wav = await toWav(new Blob(chunks, { type: chunks[0] ? chunks[0].type : "" }));
    const stamp = new Date().toISOString().slice(11, 19).replace(/:/g, "");
    predictFiles([new File([wav], `recording-${stamp}.wav`, { type: "audio/wav" })]);
  };
  recorder.start();
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
}
async function toWav(blob) {
  const ctx = new AudioContext();
  const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
  ctx.close();
  const data = audio.getChannelData(0), rate = audio.sampleRate;
  const view = new DataView(new ArrayBuffer(44 + data.length * 2));
  const text = (at, s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + data.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, data.length * 2, true);
  for (let i = 0; i < data.length; i++) {
    const s = Math.max(-1, Math.min(1, data[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return view.buffer;
}

// -- Jobs ---------------------------------------------------------------------------------------
const followed = new Set();
function what(job) {
  if (job.KIND === "train") return `${job.DATASET || ""} (${job.PROTOCOL || ""})`;
  if (job.KIND === "score") return job.FOLDER || "";
  return job.FILENAME || "";
}
function progressCell(job) {
  if (job.PROGRESS) {
    const { DONE, TOTAL } = job.PROGRESS;
    const bar = el("progress", { max: String(TOTAL || 1), value: String(DONE), "aria-label": `progress ${DONE} of ${TOTAL}` });
    return el("span", {}, bar, ` ${DONE}/${TOTAL}`);
  }
  return el("span", {}, job.JOB_STATUS === "SUCCEEDED" ? "done" : "");
}
function jobRow(job) {
  const actions = el("td");
  actions.append(el("button", { type: "button", onclick: () => showJob(job.JOB_ID), "aria-label": `details of job ${job.JOB_ID}` }, "Details"));
  if (ACTIVE.has(job.JOB_STATUS)) {
    actions.append(" ", el("button", { type: "button", onclick: () => cancelJob(job.JOB_ID), "aria-label": `cancel job ${job.JOB_ID}` }, "Cancel"));
  }
  return el("tr", { "data-job": job.JOB_ID, "data-status": job.JOB_STATUS },
    el("td", {}, el("code", {}, job.JOB_ID.slice(0, 8))), el("td", {}, job.KIND), el("td", {}, what(job)),
    el("td", { class: "status" }, job.JOB_STATUS), el("td", {}, progressCell(job)), el("td", {}, seconds(job)), actions);
}
function putJob(job) {
  const tbody = $("#jobs-table tbody");
  const old = tbody.querySelector(`tr[data-job="${job.JOB_ID}"]`);
  const row = jobRow(job);
  if (old) old.replaceWith(row); else tbody.prepend(row);
  if (ACTIVE.has(job.JOB_STATUS) && !followed.has(job.JOB_ID)) {
    followed.add(job.JOB_ID);
    follow(job.JOB_ID, putJob).finally(() => { followed.delete(job.JOB_ID); loadModels(); });
  }
}
async function loadJobs() {
  const r = await json("/jobs?limit=30");
  if (r.status !== 200) return;
  $("#jobs-table tbody").replaceChildren();
  [...r.body.JOBS].reverse().forEach(putJob);
}
async function cancelJob(jobId) {
  const r = await json(`/jobs/${jobId}`, { method: "DELETE" });
  if (r.status === 200) putJob(r.body);
}
async function showJob(jobId) {
  const r = await json(`/jobs/${jobId}`);
  if (r.status !== 200) return;
  const job = r.body;
  $("#job-detail").hidden = false;
  $("#job-detail-title").textContent = `Job ${jobId} (${job.KIND}, ${job.JOB_STATUS})`;
  $("#job-json").textContent = JSON.stringify(job, null, 2);
  const downloads = $("#job-downloads");
  downloads.replaceChildren();
  const head = $("#rows-table thead"), body = $("#rows-table tbody");
  head.replaceChildren(); body.replaceChildren();
  if (job.KIND !== "score" || job.JOB_STATUS !== "SUCCEEDED") return;
  for (const format of ["csv", "jsonl"]) {
    downloads.append(el("button", { type: "button", onclick: () => download(`/jobs/${jobId}/results?format=${format}`, `${jobId}.${format}`) },
      `Download ${format.toUpperCase()}`), " ");
  }
  const rows = await json(`/jobs/${jobId}/results?limit=200`);
  head.append(el("tr", {}, ...["File", "Speaker", "Emotion", "Probability", "Error"].map((h) => el("th", { scope: "col" }, h))));
  for (const row of rows.body.ROWS || []) {
    body.append(el("tr", {}, el("td", {}, row.FILENAME), el("td", {}, row.SPEAKER || ""), el("td", {}, row.EMOTION || ""),
      el("td", {}, row.PROBABILITY == null ? "" : row.PROBABILITY.toFixed(3)), el("td", {}, row.ERROR ? row.ERROR.CODE : "")));
  }
}

// -- Train and score ----------------------------------------------------------------------------
async function submitJob(path, payload) {
  const r = await json(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  if (r.status !== 202 && r.status !== 200) { $("#run-message").textContent = errorText(r); return; }
  $("#run-message").textContent = `Job ${r.body.JOB_ID} queued; follow it on the Jobs view.`;
  location.hash = "#jobs";
  putJob(r.body);
}

// -- Models -------------------------------------------------------------------------------------
const f1 = (mean, std) => (mean == null ? "" : `${mean.toFixed(3)}${std == null ? "" : " ± " + std.toFixed(3)}`);
async function loadModels() {
  const r = await json("/models");
  if (r.status !== 200) return;
  const tbody = $("#models-table tbody");
  tbody.replaceChildren();
  for (const m of r.body.MODELS) {
    const v = m.MODEL_VERSION;
    const actions = el("td", {}, el("button", { type: "button", onclick: () => showConfusion(v), "aria-label": `confusion matrix of ${v}` }, "Confusion"));
    if (!m.CURRENT) {
      actions.append(" ", el("button", { type: "button", onclick: () => modelAction(v, "activate"), "aria-label": `activate ${v}` }, "Activate"),
        " ", el("button", { type: "button", onclick: () => modelAction(v, "delete"), "aria-label": `delete ${v}` }, "Delete"));
    }
    tbody.append(el("tr", { "data-version": v, "data-current": String(m.CURRENT) },
      el("td", {}, el("code", {}, v)), el("td", {}, m.CREATED_AT || ""), el("td", {}, m.DATASET || ""), el("td", {}, m.PROTOCOL || ""),
      el("td", {}, f1(m.F1_MACRO_MEAN, m.F1_MACRO_STD)), el("td", {}, f1(m.SPEAKER_F1_MACRO_MEAN, m.SPEAKER_F1_MACRO_STD)),
      el("td", { class: "current" }, m.CURRENT ? "current" : ""), actions));
  }
}
async function modelAction(version, action) {
  if (action === "delete" && !confirm(`Delete model ${version}?`)) return;
  const r = action === "delete"
    ? await json(`/models/${version}`, { method: "DELETE" })
    : await json(`/models/${version}/activate`, { method: "POST" });
  $("#models-message").textContent = r.status === 200 ? `${version}: ${action === "delete" ? "deleted" : "now current"}` : errorText(r);
  await loadModels();
}
async function showConfusion(version) {
  const detail = await json(`/models/${version}`);
  const resp = await api(detail.body.CONFUSION_PNG || `/models/${version}/confusion.png`);
  if (!resp.ok) { $("#models-message").textContent = `no confusion matrix for ${version}`; return; }
  const img = $("#confusion-img");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await resp.blob());
  img.alt = `confusion matrix of model ${version}`;
  $("#confusion-caption").textContent = `Confusion matrix of ${version}`;
  $("#confusion").hidden = false;
}

// -- views by URL fragment ----------------------------------------------------------------------
function route() {
  const view = (location.hash || "#try").slice(1);
  document.querySelectorAll("[data-view]").forEach((s) => { s.hidden = s.dataset.view !== view; });
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.getAttribute("href") === "#" + view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (view === "jobs") loadJobs();
  if (view === "models") loadModels();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").addEventListener("submit", keyGiven);
  $("#key-dialog").addEventListener("cancel", (e) => e.preventDefault());  // the key is needed
  $("#try-form").addEventListener("submit", (e) => { e.preventDefault(); predictFiles($("#try-files").files); });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); predictFiles(e.dataTransfer.files); });
  $("#rec").addEventListener("click", toggleRecording);
  if (!window.MediaRecorder || !navigator.mediaDevices) $("#rec").hidden = true;
  $("#jobs-refresh").addEventListener("click", loadJobs);
  $("#train-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitJob("/train", { dataset: $("#train-dataset").value.trim(), protocol: $("#train-protocol").value,
      features: $("#train-features").value, adapt: $("#train-adapt").value, activate: $("#train-activate").checked });
  });
  $("#score-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const patterns = $("#score-patterns").value.split(",").map((p) => p.trim()).filter(Boolean);
    submitJob("/score", { folder: $("#score-folder").value.trim(), patterns, recursive: $("#score-recursive").checked,
      evaluate: $("#score-evaluate").checked });
  });
  window.addEventListener("hashchange", route);
  route();
  probes();
  setInterval(probes, 10000);
  api("/models");  // asks for the key at once where the service wants one
});
