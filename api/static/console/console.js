// The web console: calls the public API of this origin like any client (no library, no CDN).
// key.js asks for the API key; charts.js draws. Views are sections chosen by the URL fragment:
// #try, #jobs, #run, #models, #model/<version>, #compare/<version>/<version>, #speakers/<id>.
"use strict";

const FOLLOW_WAIT = 2;      // seconds each GET /jobs/<id>?wait= holds while a job runs
const ROWS_PAGE = 1000;     // rows per GET /jobs/<id>/results while loading a job's rows
const ROWS_MAX = 50000;     // rows loaded into the table at most (the downloads have them all)
const ROWS_SHOWN = 100;     // table rows per page on screen, at first
// Clips (the one being classified included) before an adapting model uses a speaker's
// statistics: ser.ml.adapt.MIN_CLIPS, as the README documents (the API does not report it).
const MIN_CLIPS = 5;
const $ = (sel) => document.querySelector(sel);

const api = (path, options) => serKey.fetch(path, options);
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
async function download(path, filename, status) {
  const resp = await api(path);
  if (!resp.ok) {  // an error body is not the file: say so instead of saving it
    if (status) status.textContent = `Download failed: HTTP ${resp.status}`;
    return;
  }
  if (status) status.textContent = "";
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
function predictionView(job) {
  const parts = [];
  if (job.SEGMENTS) {
    parts.push(el("p", { class: "emotion" }, job.EMOTION
      ? `${job.EMOTION} (${pct(job.PROBABILITY)}), the most speech time` : "no speech found"), timeline(job));
  } else {
    parts.push(el("p", { class: "emotion" }, `${job.EMOTION} (${pct(job.PROBABILITY)})`), chart(job.PROBABILITIES));
  }
  return parts;
}
async function predictOne(file, speaker, segments) {
  const meta = el("p", { class: "meta" }, "sending…");
  const item = el("li", { class: "clip" }, el("strong", {}, file.name), meta);
  $("#clips").prepend(item);
  const form = new FormData();
  form.append("file", file, file.name);
  if (speaker) form.append("speaker", speaker);
  if (segments) form.append("segments", "true");
  const r = await json("/predict?wait=30", { method: "POST", body: form });
  let job = r.body;
  if (r.status === 202) {
    job = await follow(job.JOB_ID, (j) => {
      if (j.PROGRESS) meta.textContent = `working… ${j.PROGRESS.DONE} of ${j.PROGRESS.TOTAL}${segments ? " s of audio" : ""}`;
    });
  }
  meta.remove();
  if (job.JOB_STATUS !== "SUCCEEDED") {
    item.append(el("p", { class: "error" }, job.ERROR ? `${job.ERROR.CODE}: ${job.ERROR.MESSAGE}` : errorText(r)));
    return;
  }
  item.append(...predictionView(job),
    el("p", { class: "meta" }, `model ${job.MODEL_VERSION} · job ${job.JOB_ID.slice(0, 8)} · ${seconds(job)}`));
  if (job.SPEAKER) item.append(speakerLine(job));
}
// A prediction that named a speaker: ADAPTED, and a link to the speaker on the Speakers view.
function speakerLine(job) {
  return el("p", { class: "speaker-line" }, "Speaker ",
    el("a", { href: speakerHref(job.SPEAKER), "aria-label": `speaker ${job.SPEAKER} on the Speakers view` }, job.SPEAKER),
    " · ", el("strong", {}, "ADAPTED: "), el("span", { class: "adapted", "data-adapted": String(!!job.ADAPTED) },
      job.ADAPTED ? "yes (classified with the speaker's statistics)"
        : `no (the raw-feature part answered: the model does not adapt, or the speaker has fewer than ${MIN_CLIPS} clips)`));
}
function predictFiles(files) {
  $("#try-message").textContent = "";
  const speaker = $("#try-speaker").value.trim();
  const segments = $("#try-segments").checked;
  if (segments && speaker) {
    $("#try-message").textContent = "Emotion over time takes no speaker: clear the speaker field or the box.";
    return;
  }
  const wanted = [...files].filter((f) => /\.(wav|flac|ogg)$/i.test(f.name) || f.type.startsWith("audio/"));
  if (!wanted.length) { $("#try-message").textContent = "Choose WAV, FLAC or OGG files."; return; }
  wanted.forEach((f) => predictOne(f, speaker, segments));
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
  const detail = $("#job-detail");
  detail.hidden = false;
  $("#job-detail-title").textContent = `Job ${jobId} (${job.KIND}, ${job.JOB_STATUS})`;
  $("#job-json").textContent = JSON.stringify(job, null, 2);
  const out = $("#job-view");
  out.replaceChildren();
  if (job.KIND === "predict" && job.JOB_STATUS === "SUCCEEDED") out.append(...predictionView(job));
  if (job.KIND === "score" && job.JOB_STATUS === "SUCCEEDED") await scoreView(out, job);
  detail.scrollIntoView({ block: "start" });
}

// A finished score job: its per-emotion summary, its evaluation, the downloads and its rows
// as a table sorted by a column header and filtered by text and emotion, shown a page at a time.
async function scoreView(out, job) {
  const jobId = job.JOB_ID;
  const downloads = el("p", { class: "downloads" });
  const failed = el("span", { role: "alert" });
  for (const format of ["csv", "jsonl"]) {
    downloads.append(el("button", { type: "button", onclick: () => download(`/jobs/${jobId}/results?format=${format}`, `${jobId}.${format}`, failed) },
      `Download ${format.toUpperCase()}`), " ");
  }
  downloads.append(failed);
  out.append(summaryView(job), downloads);
  if (job.EVALUATION && job.EVALUATION.CONFUSION_MATRIX) out.append(evaluationView(job.EVALUATION));
  const status = el("p", { class: "meta", role: "status" }, "loading rows…");
  out.append(status);
  const rows = [];
  for (let offset = 0; rows.length < ROWS_MAX;) {  // offset and limit count rows (segment rows too)
    const page = await json(`/jobs/${jobId}/results?offset=${offset}&limit=${ROWS_PAGE}`);
    if (page.status !== 200) { status.textContent = errorText(page); return; }
    rows.push(...page.body.ROWS);
    status.textContent = `loading rows… ${rows.length} of ${page.body.ROW_COUNT ?? page.body.COUNT}`;
    if (!page.body.NEXT) break;
    offset += ROWS_PAGE;
  }
  status.remove();
  out.append(rowsTable(rows, job));
}
function summaryView(job) {
  const entries = Object.entries(job.SUMMARY || {});
  // files per emotion (a job that reports seconds per emotion: its seconds)
  const value = (v) => (typeof v === "number" ? v : v.SECONDS);
  const total = entries.reduce((a, [, v]) => a + value(v), 0);
  const unit = entries.length && typeof entries[0][1] !== "number" ? "s" : "files";
  const table = el("table", { class: "figures summary", id: "score-summary" },
    el("caption", {}, `Per emotion: ${job.SUCCEEDED ?? total} scored, ${job.FAILED ?? 0} failed`),
    headRow("Emotion", unit === "s" ? "Seconds" : "Files", "Share"));
  const body = el("tbody");
  for (const [name, v] of entries.sort((a, b) => value(b[1]) - value(a[1]))) {
    body.append(el("tr", { "data-emotion": name }, el("th", { scope: "row" }, name),
      el("td", {}, unit === "s" ? fixed(value(v), 1) : String(value(v))),
      barCell(total ? value(v) / total : 0, { text: pct(total ? value(v) / total : 0) })));
  }
  table.append(body);
  return el("div", { class: "scroll" }, table);
}
function evaluationView(ev) {
  return el("section", { class: "evaluation", "aria-label": "evaluation against the labels" },
    el("h4", {}, `Evaluation against the labels: F1-macro ${fixed(ev.F1_MACRO)}, UAR ${fixed(ev.UAR)}, accuracy ${fixed(ev.ACCURACY)} (${ev.EVALUATED} files)`),
    confusionTables(ev.CONFUSION_MATRIX, ev.CLASSES, "this folder"),
    ev.PER_CLASS ? perClassTable(ev.PER_CLASS, "Per class, this folder") : "");
}

const ROW_COLUMNS = [
  { key: "FILENAME", name: "File" },
  { key: "SPEAKER", name: "Speaker", optional: true },
  { key: "START", name: "Start (s)", optional: true, number: true },
  { key: "END", name: "End (s)", optional: true, number: true },
  { key: "EMOTION", name: "Emotion" },
  { key: "PROBABILITY", name: "Probability", number: true },
  { key: "ADAPTED", name: "Adapted", optional: true },
  { key: "ERROR", name: "Error" },
];
function cellText(row, key) {
  const v = row[key];
  if (v == null) return "";
  if (key === "ERROR") return `${v.CODE}: ${v.MESSAGE}`;
  if (key === "PROBABILITY") return v.toFixed(3);
  if (key === "START" || key === "END") return v.toFixed(2);
  if (key === "ADAPTED") return v ? "yes" : "no";
  return String(v);
}
function rowsTable(rows, job) {
  const columns = ROW_COLUMNS.filter((c) => !c.optional || rows.some((r) => r[c.key] != null));
  const state = { key: null, dir: 1, text: "", emotion: "", page: 0, size: ROWS_SHOWN };
  const emotions = [...new Set(rows.map((r) => r.EMOTION).filter(Boolean))].sort();
  const filterText = el("input", { id: "rows-filter", type: "search", placeholder: "file, speaker or error" });
  const filterEmotion = el("select", { id: "rows-emotion" }, el("option", { value: "" }, "all"),
    ...emotions.map((e) => el("option", { value: e }, e)), el("option", { value: "!error" }, "errors only"));
  const pageSize = el("select", { id: "rows-size" }, ...[10, 25, 100, 500].map((n) => el("option", { value: String(n) }, String(n))));
  pageSize.value = String(ROWS_SHOWN);
  const controls = el("div", { class: "row-filters", role: "search", "aria-label": "filter the rows" },
    el("span", {}, el("label", { for: "rows-filter" }, "Filter rows"), filterText),
    el("span", {}, el("label", { for: "rows-emotion" }, "Emotion"), filterEmotion),
    el("span", {}, el("label", { for: "rows-size" }, "Rows per page"), pageSize));
  const table = el("table", { id: "rows-table" }, el("caption", {}, `Rows of job ${job.JOB_ID.slice(0, 8)}: click a column header to sort`));
  const headers = columns.map((c) => {
    const button = el("button", { type: "button", class: "sort" }, c.name);
    const th = el("th", { scope: "col", "data-key": c.key, "aria-sort": "none" }, button);
    button.addEventListener("click", () => {
      state.dir = state.key === c.key ? -state.dir : 1;
      state.key = c.key; state.page = 0; render();
    });
    return th;
  });
  table.append(el("thead", {}, el("tr", {}, ...headers)));
  const tbody = el("tbody");
  table.append(tbody);
  const count = el("p", { id: "rows-count", class: "meta", role: "status", "aria-live": "polite" });
  const prev = el("button", { type: "button", id: "rows-prev" }, "Previous page");
  const next = el("button", { type: "button", id: "rows-next" }, "Next page");
  prev.addEventListener("click", () => { state.page--; render(); });
  next.addEventListener("click", () => { state.page++; render(); });
  filterText.addEventListener("input", () => { state.text = filterText.value.trim().toLowerCase(); state.page = 0; render(); });
  filterEmotion.addEventListener("change", () => { state.emotion = filterEmotion.value; state.page = 0; render(); });
  pageSize.addEventListener("change", () => { state.size = Number(pageSize.value); state.page = 0; render(); });

  function render() {
    let shown = rows.filter((r) => {
      if (state.emotion === "!error" ? !r.ERROR : state.emotion && r.EMOTION !== state.emotion) return false;
      if (!state.text) return true;
      return [r.FILENAME, r.SPEAKER, r.EMOTION, r.ERROR && r.ERROR.CODE, r.ERROR && r.ERROR.MESSAGE]
        .some((v) => v && String(v).toLowerCase().includes(state.text));
    });
    if (state.key) {
      const col = columns.find((c) => c.key === state.key);
      const value = (r) => (col.number ? r[col.key] : cellText(r, col.key).toLowerCase());
      shown = [...shown].sort((a, b) => {
        const x = value(a), y = value(b);
        if (x == null || x === "") return 1;  // empty cells last, either way
        if (y == null || y === "") return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
      });
    }
    headers.forEach((th) => th.setAttribute("aria-sort",
      th.dataset.key === state.key ? (state.dir > 0 ? "ascending" : "descending") : "none"));
    const pages = Math.max(1, Math.ceil(shown.length / state.size));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    const from = state.page * state.size;
    tbody.replaceChildren(...shown.slice(from, from + state.size).map((r) =>
      el("tr", { "data-emotion": r.EMOTION || "", class: r.ERROR ? "failed" : "" },
        ...columns.map((c) => el("td", {}, cellText(r, c.key))))));
    count.textContent = shown.length
      ? `Rows ${from + 1}–${Math.min(from + state.size, shown.length)} of ${shown.length} shown (${rows.length} loaded${rows.length >= ROWS_MAX ? "; the downloads hold every row" : ""}), page ${state.page + 1} of ${pages}`
      : `No row matches (${rows.length} loaded)`;
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  }
  render();
  return el("section", { class: "rows", "aria-label": "the job's rows" }, controls, count,
    el("div", { class: "scroll" }, table), el("p", { class: "pager" }, prev, " ", next));
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
let modelList = [];
async function loadModels() {
  const r = await json("/models");
  if (r.status !== 200) return;
  modelList = r.body.MODELS;
  const tbody = $("#models-table tbody");
  tbody.replaceChildren();
  for (const m of r.body.MODELS) {
    const v = m.MODEL_VERSION;
    const actions = el("td", {}, el("a", { href: `#model/${v}`, "aria-label": `details of ${v}` }, "Details"));
    if (!m.CURRENT) {
      actions.append(" ", el("button", { type: "button", onclick: () => modelAction(v, "activate"), "aria-label": `activate ${v}` }, "Activate"),
        " ", el("button", { type: "button", onclick: (e) => confirmDelete(v, e.currentTarget), "aria-label": `delete ${v}`, "aria-haspopup": "dialog" }, "Delete"));
    }
    tbody.append(el("tr", { "data-version": v, "data-current": String(m.CURRENT) },
      el("td", {}, el("a", { href: `#model/${v}` }, el("code", {}, v))), el("td", {}, m.CREATED_AT || ""), el("td", {}, m.DATASET || ""), el("td", {}, m.PROTOCOL || ""),
      el("td", {}, f1(m.F1_MACRO_MEAN, m.F1_MACRO_STD)), el("td", {}, f1(m.SPEAKER_F1_MACRO_MEAN, m.SPEAKER_F1_MACRO_STD)),
      el("td", { class: "current" }, m.CURRENT ? "current" : ""), actions));
  }
  fillCompareChoices();
}
// "Delete": asked first in an in-page modal dialog, as forgetting a speaker is (askInPage).
function confirmDelete(version, opener) {
  $("#delete-text").textContent = `Delete model ${version} from the registry? `
    + "It cannot be activated again, and jobs pinned to it that have not finished fail.";
  $("#delete-yes").textContent = `Delete ${version}`;
  askInPage("delete", () => modelAction(version, "delete"), opener);
}
async function modelAction(version, action) {
  const r = action === "delete"
    ? await json(`/models/${version}`, { method: "DELETE" })
    : await json(`/models/${version}/activate`, { method: "POST" });
  $("#models-message").textContent = r.status === 200 ? `${version}: ${action === "delete" ? "deleted" : "now current"}` : errorText(r);
  await loadModels();
}

// A version's figures per protocol: EVALUATIONS, or (a service before it) what METRICS holds.
function evaluationsOf(m) {
  if (m.EVALUATIONS) return m.EVALUATIONS;
  const x = m.METRICS;
  if (!x) return {};
  const perClass = Object.fromEntries(Object.entries(x.per_class || {}).map(([c, f]) =>
    [c, { PRECISION: f.precision, RECALL: f.recall, F1: f.f1, SUPPORT: f.support }]));
  return { [x.protocol || m.PROTOCOL || "stratified"]: {
    F1_MACRO_MEAN: x.f1_macro_mean, F1_MACRO_STD: x.f1_macro_std, F1_FOLDS: x.f1_macro_folds, N_FOLDS: x.n_folds,
    REPEATS: x.repeats, UAR: x.uar, ACCURACY: x.accuracy, LOG_LOSS: x.log_loss, ECE: x.ece, CHANCE_F1: x.chance_f1,
    CONFUSION_MATRIX: x.confusion_matrix, PER_CLASS: Object.keys(perClass).length ? perClass : null } };
}
const METRIC_ROWS = [
  ["F1-macro", (e) => f1(e.F1_MACRO_MEAN, e.F1_MACRO_STD), (e) => e.F1_MACRO_MEAN],
  ["UAR", (e) => fixed(e.UAR), (e) => e.UAR],
  ["Accuracy", (e) => fixed(e.ACCURACY), (e) => e.ACCURACY],
  ["ECE", (e) => fixed(e.ECE), (e) => e.ECE],
  ["Log loss", (e) => fixed(e.LOG_LOSS), (e) => e.LOG_LOSS],
  ["Chance F1", (e) => fixed(e.CHANCE_F1), (e) => e.CHANCE_F1],
  ["Folds", (e) => (e.N_FOLDS == null ? "–" : `${e.N_FOLDS}${e.REPEATS > 1 ? ` (${e.REPEATS} shuffles)` : ""}`), null],
];
function metricsTable(evals, caption) {
  const names = Object.keys(evals);
  const table = el("table", { class: "figures metrics" }, el("caption", {}, caption),
    headRow("Metric", ...names.map((n) => `${n} protocol`)));
  const body = el("tbody");
  for (const [label, show] of METRIC_ROWS) {
    body.append(el("tr", { "data-metric": label }, el("th", { scope: "row" }, label), ...names.map((n) => el("td", {}, show(evals[n])))));
  }
  table.append(body);
  return el("div", { class: "scroll" }, table);
}
function facts(m) {
  const adapt = m.ADAPT ? `${m.ADAPT}${m.ADAPT_CHOSEN && m.ADAPT_CHOSEN !== m.ADAPT ? " → " + m.ADAPT_CHOSEN : ""}` : (m.ADAPT_CHOSEN || "–");
  const items = [
    ["Created", m.CREATED_AT], ["Dataset", m.DATASET], ["Protocol asked", m.PROTOCOL], ["Features", m.FEATURE_SPEC],
    ["Classes", (m.CLASSES || []).join(", ")], ["Clips", m.N_SAMPLES], ["Speaker adaptation", adapt],
    ["Trained by job", m.JOB_ID ? m.JOB_ID.slice(0, 8) : null],
  ];
  return el("dl", { class: "facts" }, ...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v == null || v === "" ? "–" : String(v))]));
}
const MISSING = "not recorded for this version (trained before the service kept it)";
function protocolSection(name, e, classes, version) {
  const what = `${version}, ${name} protocol`;
  const section = el("section", { class: "protocol", "data-protocol": name, "aria-label": `${name} protocol` },
    el("h4", {}, `${name[0].toUpperCase() + name.slice(1)} protocol`));
  const grid = el("div", { class: "panels" });
  grid.append(e.CONFUSION_MATRIX ? el("div", { class: "panel wide" }, confusionTables(e.CONFUSION_MATRIX, classes, what))
    : el("p", { class: "missing" }, `Confusion matrix: ${MISSING}.`));
  grid.append(e.PER_CLASS ? el("div", { class: "panel" }, perClassTable(e.PER_CLASS, `Per class (${what})`))
    : el("p", { class: "missing" }, `Per-class figures: ${MISSING}.`));
  grid.append(e.RELIABILITY ? el("div", { class: "panel" }, reliabilityDiagram(e.RELIABILITY, e.ECE, what))
    : el("p", { class: "missing" }, `Reliability diagram: ${MISSING}.`));
  if (e.PER_SPEAKER) grid.append(el("div", { class: "panel" }, speakerTable(e.PER_SPEAKER, `F1 per speaker (${what})`)));
  else grid.append(el("p", { class: "missing" }, "F1 per speaker: " + (e.RELIABILITY ? "the dataset names no speakers." : `${MISSING}.`)));
  if (e.F1_FOLDS) grid.append(el("div", { class: "panel" }, foldTable(e.F1_FOLDS, e.N_FOLDS, e.REPEATS, `F1 per fold (${what})`)));
  section.append(grid);
  return section;
}
// A version's page: its facts, its figures per protocol (``order``: protocols first in this
// order, so two pages side by side line up), under an h3 title unless ``title`` is false.
function modelPage(m, { title = true, order = [] } = {}) {
  const evals = evaluationsOf(m);
  const names = [...order.filter((n) => n in evals), ...Object.keys(evals).filter((n) => !order.includes(n))];
  const ordered = Object.fromEntries(names.map((n) => [n, evals[n]]));
  const classes = m.CLASSES || Object.keys((Object.values(evals)[0] || {}).PER_CLASS || {});
  const page = el("article", { class: "model", "data-version": m.MODEL_VERSION });
  if (title) page.append(el("h3", {}, `Model ${m.MODEL_VERSION}`, m.CURRENT ? el("span", { class: "badge" }, "current") : ""));
  page.append(facts(m), metricsTable(ordered, `Cross-validated figures of ${m.MODEL_VERSION}`));
  if (!names.length) page.append(el("p", { class: "missing" }, "This version has no evaluation figures."));
  for (const name of names) page.append(protocolSection(name, ordered[name], classes, m.MODEL_VERSION));
  return page;
}
let shownSeq = 0;  // the model page or comparison asked for last (older answers are dropped)
async function showModel(version) {
  const out = $("#model-page");
  $("#model-title").textContent = `Model ${version}`;
  out.replaceChildren(el("p", { class: "meta" }, `loading ${version}…`));
  const ticket = ++shownSeq;
  const r = await json(`/models/${encodeURIComponent(version)}`);
  if (ticket !== shownSeq) return;  // another page was asked for meanwhile
  if (r.status !== 200) { out.replaceChildren(el("p", { class: "error", role: "alert" }, errorText(r))); return; }
  out.replaceChildren(modelPage(r.body, { title: false }));
  $("#model-title").replaceChildren(`Model ${version}`, r.body.CURRENT ? el("span", { class: "badge" }, "current") : "");
  document.title = `Model ${version} — SER console`;
}

// -- two versions side by side -------------------------------------------------------------------
function fillCompareChoices() {
  for (const [id, pick] of [["#compare-a", 1], ["#compare-b", 0]]) {
    const select = $(id), kept = select.value;
    select.replaceChildren(...modelList.map((m) => el("option", { value: m.MODEL_VERSION },
      `${m.MODEL_VERSION}${m.CURRENT ? " (current)" : ""} · ${m.DATASET || ""} · ${m.PROTOCOL || ""}`)));
    const fallback = modelList[Math.min(pick, modelList.length - 1)];
    select.value = modelList.some((m) => m.MODEL_VERSION === kept) ? kept : (fallback ? fallback.MODEL_VERSION : "");
  }
}
async function showCompare(a, b) {
  if (!modelList.length) await loadModels();
  if (!a || !b) {  // the newest two (#compare alone)
    if (modelList.length < 2) { $("#compare-out").replaceChildren(el("p", {}, "Two versions are needed to compare.")); return; }
    location.replace(`#compare/${modelList[1].MODEL_VERSION}/${modelList[0].MODEL_VERSION}`);
    return;
  }
  $("#compare-a").value = a; $("#compare-b").value = b;
  const out = $("#compare-out");
  out.replaceChildren(el("p", { class: "meta" }, `loading ${a} and ${b}…`));
  const ticket = ++shownSeq;
  const [ra, rb] = await Promise.all([json(`/models/${encodeURIComponent(a)}`), json(`/models/${encodeURIComponent(b)}`)]);
  if (ticket !== shownSeq) return;  // another comparison was asked for meanwhile
  if (ra.status !== 200 || rb.status !== 200) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, errorText(ra.status !== 200 ? ra : rb)));
    return;
  }
  const [ma, mb] = [ra.body, rb.body];
  const [ea, eb] = [evaluationsOf(ma), evaluationsOf(mb)];
  const protocols = [...new Set([...Object.keys(ea), ...Object.keys(eb)])];
  // Metrics: a row per metric and protocol, the two versions and the difference.
  const table = el("table", { class: "figures compare-metrics", id: "compare-metrics" },
    el("caption", {}, `${a} and ${b}, side by side`), headRow("Figure", a, b, `${b} − ${a}`));
  const body = el("tbody");
  for (const p of protocols) {
    for (const [label, show, value] of METRIC_ROWS) {
      const x = ea[p], y = eb[p];
      const dx = value && x && y && value(x) != null && value(y) != null ? value(y) - value(x) : null;
      body.append(el("tr", { "data-metric": `${label} (${p})` }, el("th", { scope: "row" }, `${label} (${p})`),
        el("td", {}, x ? show(x) : "–"), el("td", {}, y ? show(y) : "–"),
        el("td", { class: dx == null ? "" : dx > 0 ? "up" : dx < 0 ? "down" : "" }, dx == null ? "" : (dx > 0 ? "+" : "") + dx.toFixed(3))));
    }
  }
  for (const [label, key] of [["Dataset", "DATASET"], ["Features", "FEATURE_SPEC"], ["Clips", "N_SAMPLES"], ["Adaptation", "ADAPT_CHOSEN"]]) {
    body.append(el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, String(ma[key] ?? "–")), el("td", {}, String(mb[key] ?? "–")), el("td")));
  }
  table.append(body);
  // Per-class F1, P and R of each version, for each protocol both have.
  const perClass = protocols.filter((p) => ea[p] && eb[p] && ea[p].PER_CLASS && eb[p].PER_CLASS).map((p) => {
    const classes = [...new Set([...Object.keys(ea[p].PER_CLASS), ...Object.keys(eb[p].PER_CLASS)])];
    const t = el("table", { class: "figures compare-classes", "data-protocol": p },
      el("caption", {}, `Per class, ${p} protocol: ${a} and ${b}`),
      headRow("Class", `F1 ${a}`, `F1 ${b}`, `Precision ${a}`, `Precision ${b}`, `Recall ${a}`, `Recall ${b}`));
    const tb = el("tbody");
    for (const c of classes) {
      const x = ea[p].PER_CLASS[c] || {}, y = eb[p].PER_CLASS[c] || {};
      tb.append(el("tr", { "data-class": c }, el("th", { scope: "row" }, c), barCell(x.F1), barCell(y.F1),
        barCell(x.PRECISION), barCell(y.PRECISION), barCell(x.RECALL), barCell(y.RECALL)));
    }
    t.append(tb);
    return el("div", { class: "scroll" }, t);
  });
  out.replaceChildren(el("div", { class: "scroll" }, table), ...perClass,
    el("div", { class: "side-by-side" }, modelPage(ma, { order: protocols }), modelPage(mb, { order: protocols })));
  document.title = `${a} and ${b} — SER console`;
}

// -- Speakers -----------------------------------------------------------------------------------
const speakerHref = (id) => `#speakers/${encodeURIComponent(id)}`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
let speakerSeq = 0;  // the lookup asked for last (older answers are dropped)
function speakerMessage(text, isError = true) {
  const node = $("#speaker-message");
  node.className = isError ? "error" : "done";
  node.textContent = text;
}
// An id the API cannot be asked about at all: "/" splits the URL path, "." and ".." are
// resolved away by the browser (the API answers such ids with INVALID_SPEAKER elsewhere).
function unaskable(id) {
  if (id.includes("/") || id === "." || id === "..") {
    return `INVALID_SPEAKER: "${id}" cannot be a speaker id (no "/", not "." or "..").`;
  }
  return null;
}
function speakerError(r, id) {
  if (r.status === 404 && r.body.ERROR && r.body.ERROR.CODE === "SPEAKER_NOT_FOUND") {
    return `No statistics for speaker "${id}": no prediction has named this speaker yet, or it was forgotten.`;
  }
  if (r.status === 400) return `Not a valid speaker id. ${errorText(r)}`;
  return errorText(r);
}
// Whether the current model would classify this speaker's next clip with its statistics.
function adaptVerdict(clips, models) {
  const current = models && models.MODELS.find((m) => m.CURRENT);
  if (!current) return ["no", "There is no current model yet."];
  const v = current.MODEL_VERSION;
  const mode = current.ADAPT_CHOSEN || (current.ADAPT && current.ADAPT !== "auto" ? current.ADAPT : "off");
  if (mode === "off") {
    return ["no", `No: the current model ${v} does not adapt to speakers (adaptation off); the statistics wait for a model that does.`];
  }
  const n = clips[current.FEATURE_SPEC] || 0;
  if (n + 1 >= MIN_CLIPS) {
    return ["yes", `Yes: the current model ${v} (adaptation ${mode}) would classify this speaker's next clip with its statistics: ${plural(n, "clip")} under feature spec ${current.FEATURE_SPEC}, plus that clip, make ${MIN_CLIPS} or more.`];
  }
  const more = MIN_CLIPS - 1 - n;
  return ["not yet", `Not yet: the current model ${v} (adaptation ${mode}) needs ${MIN_CLIPS} clips under feature spec ${current.FEATURE_SPEC}, the clip being classified included; this speaker has ${n} there, so ${plural(more, "more prediction")} before the next one is adapted.`];
}
function speakerCard(body, models) {
  const id = body.SPEAKER;
  const current = models && models.MODELS.find((m) => m.CURRENT);
  const specs = Object.entries(body.CLIPS);
  const total = specs.reduce((a, [, n]) => a + n, 0);
  const table = el("table", { class: "figures speaker-clips", id: "speaker-clips" },
    el("caption", {}, `Clips in the statistics of ${id}, per feature spec`), headRow("Feature spec", "Clips", "Current model"));
  const tbody = el("tbody");
  for (const [spec, n] of specs) {
    const used = current && current.FEATURE_SPEC === spec;
    tbody.append(el("tr", { "data-spec": spec }, el("th", { scope: "row" }, el("code", {}, spec)),
      el("td", { class: "clips" }, String(n)), el("td", {}, used ? `its features (${current.MODEL_VERSION})` : "")));
  }
  table.append(tbody);
  const [verdict, why] = adaptVerdict(body.CLIPS, models);
  const forget = el("button", { type: "button", id: "forget", "aria-haspopup": "dialog" }, "Forget this speaker");
  forget.addEventListener("click", () => confirmForget(id, total, forget));
  return el("article", { class: "speaker", "data-speaker": id },
    el("h3", {}, `Speaker ${id}`),
    el("dl", { class: "facts" },
      el("dt", {}, "Clips"), el("dd", { id: "speaker-total" }, `${plural(total, "clip")} in all`),
      el("dt", {}, "Would adapt"), el("dd", { id: "speaker-adapt", "data-verdict": verdict }, why)),
    el("div", { class: "scroll" }, table), forget);
}
async function showSpeaker(id) {
  $("#speaker-id").value = id || "";
  const out = $("#speaker-out");
  speakerMessage("");
  out.replaceChildren();
  if (!id) return;
  const bad = unaskable(id);
  if (bad) { speakerMessage(bad); return; }
  out.replaceChildren(el("p", { class: "meta" }, `looking ${id} up…`));
  const ticket = ++speakerSeq;
  const [r, models] = await Promise.all([json(`/speakers/${encodeURIComponent(id)}`), json("/models")]);
  if (ticket !== speakerSeq) return;
  out.replaceChildren();
  if (r.status !== 200) { speakerMessage(speakerError(r, id)); return; }
  out.append(speakerCard(r.body, models.status === 200 ? models.body : null));
  document.title = `Speaker ${id} — SER console`;
}
// An in-page modal confirmation, never window.confirm: the dialog #<name>-dialog, whose
// #<name>-yes runs onYes and #<name>-no (which has the focus) or Escape keeps things as they
// are, the focus back on the opener.
function askInPage(name, onYes, opener) {
  const dialog = $(`#${name}-dialog`);
  dialog.onclose = () => {
    if (dialog.returnValue === name) onYes(); else opener.focus();
  };
  dialog.returnValue = "";
  dialog.showModal();
  $(`#${name}-no`).focus();
}
// "Forget this speaker": asked in the page (Keep it has the focus; Escape keeps it).
function confirmForget(id, total, opener) {
  $("#forget-text").textContent = `Delete the statistics of speaker "${id}" (${plural(total, "clip")}, every feature spec)? `
    + "Its next predictions start again from nothing.";
  $("#forget-yes").textContent = `Forget ${id}`;
  askInPage("forget", () => forgetSpeaker(id), opener);
}
async function forgetSpeaker(id) {
  const r = await json(`/speakers/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (r.status !== 200) { speakerMessage(speakerError(r, id)); return; }
  const held = Object.entries(r.body.CLIPS).map(([spec, n]) => `${plural(n, "clip")} under ${spec}`).join(", ");
  const check = await json(`/speakers/${encodeURIComponent(id)}`);  // gone: SPEAKER_NOT_FOUND now
  const gone = check.status === 404;
  $("#speaker-out").replaceChildren(el("article", { class: "speaker", "data-speaker": id, "data-gone": String(gone) },
    el("h3", {}, `Speaker ${id}`),
    el("p", { id: "speaker-gone" }, gone ? `Forgotten: the statistics of ${id} (${held}) are gone; looking it up now finds nothing.`
      : `Forgotten (${held}), but it holds statistics again: a prediction naming it finished meanwhile.`)));
  speakerMessage(`Speaker ${id} forgotten.`, false);
  $("#speaker-id").focus();
}

// -- views by URL fragment ----------------------------------------------------------------------
function route() {
  const decode = (part) => { try { return decodeURIComponent(part); } catch (e) { return part; } };
  const [view, ...args] = (location.hash || "#try").slice(1).split("/").map(decode);
  const known = document.querySelector(`[data-view="${CSS.escape(view)}"]`) ? view : "try";
  document.querySelectorAll("[data-view]").forEach((s) => { s.hidden = s.dataset.view !== known; });
  const tab = known === "model" || known === "compare" ? "models" : known;
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.getAttribute("href") === "#" + tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  document.title = "Speech emotion recognition — console";
  if (known === "jobs") loadJobs();
  if (known === "models") loadModels();
  if (known === "model") showModel(args[0] || "");
  if (known === "compare") showCompare(args[0], args[1]);
  if (known === "speakers") showSpeaker(args.join("/"));
}

document.addEventListener("DOMContentLoaded", () => {
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
      features: $("#train-features").value, adapt: $("#train-adapt").value,
      repeats: Number($("#train-repeats").value), activate: $("#train-activate").checked });
  });
  $("#score-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const patterns = $("#score-patterns").value.split(",").map((p) => p.trim()).filter(Boolean);
    const body = { folder: $("#score-folder").value.trim(), patterns, recursive: $("#score-recursive").checked,
      evaluate: $("#score-evaluate").checked };
    if ($("#score-segments").checked) body.segments = true;
    const speakers = $("#score-speakers").value;
    if (speakers) body.speakers = speakers === "regex" ? $("#score-speaker-pattern").value : speakers;
    submitJob("/score", body);
  });
  $("#score-segments").addEventListener("change", () => {  // segments: without labels or speakers
    const on = $("#score-segments").checked;
    for (const id of ["#score-evaluate", "#score-speakers"]) $(id).disabled = on;
    if (on) { $("#score-evaluate").checked = false; $("#score-speakers").value = ""; showPattern(); }
  });
  const showPattern = () => {
    const regex = $("#score-speakers").value === "regex";
    $("#score-speaker-pattern").hidden = !regex;
    $("#score-speaker-pattern").required = regex;
    document.querySelector('label[for="score-speaker-pattern"]').hidden = !regex;
  };
  $("#score-speakers").addEventListener("change", showPattern);
  $("#compare-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#compare/${encodeURIComponent($("#compare-a").value)}/${encodeURIComponent($("#compare-b").value)}`;
  });
  $("#speaker-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#speaker-id").value;
    if (!id.trim()) { speakerMessage("Type a speaker id to look up."); $("#speaker-id").focus(); return; }
    const bad = unaskable(id);
    if (bad) { speakerMessage(bad); $("#speaker-out").replaceChildren(); return; }
    const before = location.hash;
    location.hash = speakerHref(id);
    if (location.hash === before) showSpeaker(id);  // the same speaker again: no hashchange
  });
  for (const name of ["forget", "delete"]) {  // the in-page confirmations (askInPage)
    $(`#${name}-yes`).addEventListener("click", () => $(`#${name}-dialog`).close(name));
    $(`#${name}-no`).addEventListener("click", () => $(`#${name}-dialog`).close(""));
  }
  window.addEventListener("hashchange", route);
  route();
  probes();
  setInterval(probes, 10000);
  api("/models");  // asks for the key at once where the service wants one
});
