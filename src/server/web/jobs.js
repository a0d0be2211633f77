// The page's jobs: each job this page submits is followed over its event stream (GET /v1/jobs/{id}/events,
// read with fetch so the API key goes along); the stage shows the newest one (progress, ETA from measured step
// times, a preview per step, the result); the queue and the history come from GET /v1/jobs (or, on a server
// without it, from the ids this browser remembers). Uses the helpers of app.js.
"use strict";

function setStatus(text) { $("status").textContent = text; }
function setProgress(fraction) {
  const pct = Math.max(0, Math.min(100, Math.round(100 * fraction)));
  $("bar-fill").style.width = pct + "%";
  $("bar").setAttribute("aria-valuenow", String(pct));
}

// ---- ETA: seconds per step per megapixel and the time around the steps, measured here and remembered ----
function estimate(params) {
  const e = store.get("timing");
  if (!e) return null;
  const mp = params.width * params.height / 1e6;
  return { perStep: e.perStepMP * mp, rest: e.restMP * mp + e.fixed, steps: params.steps || config.default_steps || 4 };
}
function learn(job, timings) {
  if (!job.stepSeconds.length) return;
  const mp = job.params.width * job.params.height / 1e6;
  const perStep = job.stepSeconds.reduce((a, b) => a + b, 0) / job.stepSeconds.length;
  const decode = timings && timings.decode ? timings.decode : 0;
  const encode = timings && timings.encode_text ? timings.encode_text : 0;
  store.set("timing", { perStepMP: perStep / mp, restMP: decode / mp, fixed: encode });
}
const seconds = (s) => (s >= 90 ? `${Math.round(s / 60)} min` : `${Math.max(1, Math.round(s))} s`);
function renderEta(job) {
  const e = estimate(job.params);
  let left = null;
  if (job.status === "running" && job.total > 0 && job.stepSeconds.length) {
    const perStep = job.stepSeconds.slice(-4).reduce((a, b) => a + b, 0) / Math.min(4, job.stepSeconds.length);
    left = (job.total - job.step) * perStep + (e ? e.rest : 0);
  } else if (e && job.status === "queued") {
    left = (Math.max(1, job.position || 1)) * (e.steps * e.perStep + e.rest);
  }
  $("eta").textContent = left === null ? "" : `about ${seconds(left)} left`;
}

// ---- following one job ----
function follow(job) {
  job = { stepSeconds: [], previews: 0, done: false, ...job };
  jobs.set(job.id, job);
  const remembered = store.get("jobs", []).filter((id) => id !== job.id);
  store.set("jobs", [job.id, ...remembered].slice(0, 100));
  focusOn(job);
  readEvents(job);
  refreshJobs();
}
function focusOn(job) {
  focus = job;
  detachOthers(job);
  $("cancel").disabled = false;
  $("previews").replaceChildren();
  $("result-actions").hidden = true;
  $("caption").textContent = "";
  $("canvas").dataset.empty = "true";
  $("canvas").dataset.kind = "";
  setProgress(job.total ? job.step / job.total : 0);
  renderJobStatus(job);
}
function renderJobStatus(job) {
  if (job !== focus) return;
  if (job.status === "queued")
    setStatus(job.position >= 1 ? `Queued: position ${job.position}` : "Queued: next in line");
  else if (job.status === "running")
    setStatus(job.stage === "denoise" && job.total ? `Step ${job.step} of ${job.total}` : STAGES[job.stage] || "Starting…");
  renderEta(job);
}
// Ends the stage's focus on a finished job (the stage keeps its last words until another of this page's
// jobs starts: see "started" in onEvent).
function finish(job, text) {
  job.done = true;
  if (job.ctl) job.ctl.abort();
  if (job === focus) {
    setStatus(text);
    $("eta").textContent = "";
    $("cancel").disabled = true;
    focus = null;
    quietUntil = performance.now() + 3000;  // the last words stay a moment before another job takes the stage
  }
  refreshJobs();
}

async function readEvents(job) {
  job.ctl = new AbortController();
  job.detached = false;
  let r;
  try {
    r = await api(`/v1/jobs/${job.id}/events`, { signal: job.ctl.signal, headers: { Accept: "text/event-stream" } });
  } catch (e) { return job.detached ? undefined : lost(job); }
  if (!r.ok) return finish(job, `Job ${job.id}: ${errorText(await readJson(r), r.status)}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      for (let end; (end = buffer.indexOf("\n\n")) >= 0; buffer = buffer.slice(end + 2)) onBlock(job, buffer.slice(0, end));
    }
  } catch (e) { if (job.done || job.detached) return; }
  if (!job.done && !job.detached) lost(job);
}
// Only the stage's job keeps an event stream open (a browser allows six connections to a server): the others
// are followed by the job list and get their stream back when the stage is free (refreshJobs).
function detachOthers(job) {
  for (const other of jobs.values()) {
    if (other !== job && !other.done && other.ctl && !other.detached) { other.detached = true; other.ctl.abort(); }
  }
}
// The stream ended before the job did: the job list takes the job up again if the server still runs it.
function lost(job) {
  if (job.done) return;
  job.detached = true;
  if (job === focus) {
    setStatus("The connection to the server was lost.");
    $("eta").textContent = "";
    $("cancel").disabled = true;
    focus = null;
  }
  showUnreachable("the event stream ended before the job did", refreshJobs);
}
function onBlock(job, block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
  }
  if (!data) return;
  let d;
  try { d = parseJson(data); } catch { return; }
  onEvent(job, d.type || name, d);
}

function onEvent(job, type, d) {
  // The last 100 events, for a look from the developer tools (the browser test prints them when a check fails).
  const note = `${job.id} ${type} ${d.step ?? d.position ?? d.stage ?? ""}`;
  window.fluxcppEvents = [...(window.fluxcppEvents || []).slice(-99), note];
  if (job.done) return;
  const now = performance.now();
  if (type === "queued") { job.status = "queued"; job.position = d.position; }
  else if (type === "started") {
    job.status = "running"; job.stage = null;
    if (!focus) focusOn(job);
  }
  else if (type === "stage") { job.status = "running"; job.stage = d.stage; job.lastStep = now; }
  else if (type === "step" && (d.step === 0 || (d.stage && d.stage !== "denoise"))) {
    job.status = "running"; job.stage = d.stage || "denoise"; job.lastStep = now;  // an older server's stage marks
  } else if (type === "step") {
    job.status = "running"; job.stage = "denoise"; job.total = d.total;
    if (job.lastStep !== undefined && d.step > job.step) job.stepSeconds.push((now - job.lastStep) / 1000 / (d.step - job.step));
    job.lastStep = now; job.step = d.step;
    if (job === focus) {
      setProgress(d.step / d.total);
      if (d.preview) showPreview(d.preview, d.step);
    }
  } else if (type === "completed") return completed(job, d);
  else if (type === "failed") {
    job.status = "failed";
    finish(job, "Failed.");
    return showBanner("failed", `The image could not be made: ${d.error || "the server gave no reason"}`, generate);
  } else if (type === "cancelled") {
    job.status = "cancelled";
    // An older server sends no reason: a cancel this page did not ask for is then the server's too.
    if (d.reason === "server_stopping" || (!d.reason && !job.cancelRequested)) {
      finish(job, "Stopped by the server.");
      return showBanner("failed", "The server shut down before this image was finished (you did not cancel it). " +
                        "Generate again once it is back.", generate);
    }
    return finish(job, "Cancelled.");
  }
  renderJobStatus(job);
  refreshQueueSoon();
}

function showPreview(b64, step) {
  const url = "data:image/png;base64," + b64;
  $("image").src = url;
  $("canvas").dataset.empty = "false";
  $("canvas").dataset.kind = "preview";
  const thumb = new Image();
  thumb.src = url; thumb.alt = `step ${step}`; thumb.title = `step ${step}`;
  $("previews").append(thumb);
}

async function completed(job, d) {
  job.status = "completed";
  learn(job, d.timings);
  const params = { ...job.params, width: d.width || job.params.width, height: d.height || job.params.height,
                   steps: d.steps || job.params.steps, seed: d.seed };
  const total = d.timings && d.timings.total ? ` in ${d.timings.total.toFixed(1)} s` : "";
  if (job === focus) setProgress(1);
  const focused = job === focus;
  finish(job, `Done${total}.`);
  if (focused) await showResult(job.id, d.image_url || `/v1/jobs/${job.id}/image`, params);
}

// ---- the result on the stage: download (file name with the seed), copy parameters, reuse ----
async function fetchImage(url) {
  const r = await api(url);
  if (!r.ok) throw new Error(errorText(await readJson(r), r.status));
  return URL.createObjectURL(await r.blob());
}
async function showResult(id, url, params) {
  let objectUrl;
  try { objectUrl = await fetchImage(url); }
  catch (e) {
    if (e instanceof Unreachable) return showUnreachable("the image did not arrive", () => showResult(id, url, params));
    return showBanner("failed", `The image of job ${id} could not be loaded: ${e.message}`);
  }
  if (shown && shown.url) URL.revokeObjectURL(shown.url);
  shown = { id, url: objectUrl, params, seed: params.seed };
  $("image").src = objectUrl;
  $("canvas").dataset.empty = "false";
  $("canvas").dataset.kind = "final";
  $("caption").textContent = `${params.width} × ${params.height} · ${params.steps || "default"} steps · seed ${params.seed}`;
  $("download").href = objectUrl;
  $("download").download = `fluxcpp-${params.seed}.png`;
  $("result-actions").hidden = false;
  $("seed-reuse").disabled = false;
}
function parametersText(p) {
  const parts = [`Steps: ${p.steps || "default"}`, `Seed: ${p.seed}`, `Size: ${p.width}x${p.height}`];
  if (p.guidance !== undefined) parts.push(`Guidance: ${p.guidance}`);
  if (p.strength !== undefined) parts.push(`Denoising strength: ${p.strength}`);
  if (p.loras && p.loras.length) parts.push(`LoRA: ${p.loras.map((l) => `${l.name}:${l.strength}`).join(" ")}`);
  if (config.model) parts.push(`Model: ${config.model}`);
  return `${p.prompt || ""}\n${parts.join(", ")}`;
}
$("copy").addEventListener("click", async () => {
  if (!shown) return;
  const text = parametersText(shown.params);
  try { await navigator.clipboard.writeText(text); }
  catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area); area.select(); document.execCommand("copy"); area.remove();
  }
  setStatus("Parameters copied.");
});
$("use").addEventListener("click", () => {
  if (!shown) return;
  const p = shown.params;
  if (p.prompt) $("prompt").value = p.prompt;
  if (p.steps) $("steps").value = p.steps;
  $("seed").value = p.seed;
  const aspect = ASPECTS.find(([, a, b]) => a && presets(a, b).some(([w, h]) => w === p.width && h === p.height));
  store.set("aspect", aspect ? aspect[0] : "Custom");
  store.set("size", `${p.width}x${p.height}`);
  $("width").value = p.width; $("height").value = p.height;
  buildSizes();
});

// ---- queue and history (GET /v1/jobs) ----
let queueTimer = null;
function refreshQueueSoon() { if (!queueTimer) queueTimer = setTimeout(() => { queueTimer = null; refreshJobs(); }, 1000); }
async function listJobs() {
  if (jobsApi) {
    const r = await api("/v1/jobs");
    if (r.ok) return ((await readJson(r)) || {}).data || [];
    if (r.status !== 404 && r.status !== 405) return null;
    jobsApi = false;
  }
  const out = [];
  for (const id of store.get("jobs", [])) {
    const r = await api(`/v1/jobs/${id}`);
    if (r.ok) out.push({ prompt: (jobs.get(id) || { params: {} }).params.prompt, ...(await readJson(r)) });
  }
  store.set("jobs", out.map((j) => j.id));
  return out;
}
let listed = false;  // the job list arrived once (the first time, the newest image goes on the stage)
let quietUntil = 0;
async function refreshJobs() {
  let list;
  try { list = await listJobs(); } catch (e) { if (e instanceof Unreachable) return; throw e; }
  if (!list) return;
  const listedOnce = listed;
  listed = true;
  renderQueue(list.filter((j) => j.status === "queued" || j.status === "running"));
  for (const j of list) {  // this page's detached jobs: finished ones are done, a running one takes a free stage
    const mine = jobs.get(j.id);
    if (!mine || mine.done || !mine.detached) continue;
    if (j.status !== "queued" && j.status !== "running") mine.done = true;
    else if (!focus && performance.now() >= quietUntil) {
      Object.assign(mine, { status: j.status, position: j.position, step: j.step, total: j.total, stepSeconds: [] });
      mine.lastStep = undefined;
      focusOn(mine);
      readEvents(mine);
    }
  }
  const done = list.filter((j) => j.status === "completed");
  renderHistory(done);
  if (!listedOnce && !shown && !focus && done.length) {  // a fresh page shows the newest image
    const j = done[0];
    setStatus(j.prompt ? `Latest: ${j.prompt}` : "Latest image");
    showResult(j.id, j.image_url || `/v1/jobs/${j.id}/image`, infoParams(j));
  }
  if (list.some((j) => j.status === "queued" || j.status === "running")) refreshQueueSoon();
}
function renderQueue(active) {
  $("queue-empty").hidden = active.length > 0;
  $("queue").replaceChildren(...active.map((j) => {
    const li = document.createElement("li");
    li.dataset.id = j.id;
    li.dataset.status = j.status;
    const what = j.status === "running" ? (j.total ? `step ${j.step}/${j.total}` : "starting") : `#${j.position ?? "?"} waiting`;
    li.innerHTML = '<span class="what"></span><span class="prompt"></span><button type="button" class="ghost small">Cancel</button>';
    li.querySelector(".what").textContent = what;
    li.querySelector(".prompt").textContent = `${j.prompt || j.id} · ${j.width}×${j.height}`;
    li.querySelector("button").addEventListener("click", () => cancelJob(j.id));
    return li;
  }));
}
function renderHistory(done) {
  $("history-empty").hidden = done.length > 0;
  const existing = new Map([...$("history").children].map((c) => [c.dataset.id, c]));
  $("history").replaceChildren(...done.map((j) => existing.get(j.id) || historyCard(j)));
}
const infoParams = (j) => ({ prompt: j.prompt, width: j.width, height: j.height, steps: j.steps, seed: j.seed });
function historyCard(j) {
  const card = document.createElement("button");
  card.type = "button"; card.className = "card"; card.dataset.id = j.id;
  card.title = `${j.prompt || ""}\nseed ${j.seed}`;
  const img = new Image(); img.alt = j.prompt || `job ${j.id}`;
  const caption = document.createElement("span"); caption.textContent = j.prompt || `seed ${j.seed}`;
  card.append(img, caption);
  const url = j.thumbnail_url || j.image_url || `/v1/jobs/${j.id}/image`;
  (thumbs.has(j.id) ? Promise.resolve(thumbs.get(j.id)) : fetchImage(url))
    .then((u) => { thumbs.set(j.id, u); img.src = u; })
    .catch(() => { card.classList.add("broken"); });
  card.addEventListener("click", () => {
    if (focus) return setStatus("Wait for the current image, or cancel it, to look at older ones.");
    $("previews").replaceChildren();
    setProgress(0);
    setStatus(j.prompt ? `From the history: ${j.prompt}` : "From the history");
    showResult(j.id, j.image_url || `/v1/jobs/${j.id}/image`, infoParams(j));
  });
  return card;
}

// ---- the API key (asked for on a 401, kept in localStorage) ----
function askForKey() { $("key-form").hidden = false; $("key-button").hidden = false; }
$("key-button").addEventListener("click", () => {
  $("key-form").hidden = !$("key-form").hidden;
  $("key").value = store.get("apiKey", "");
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  store.set("apiKey", $("key").value.trim());
  $("key-form").hidden = true;
  hideBanner("refused");
  loadServerInfo();
});

// ---- start: restore the form, then ask the server ----
for (const id of ["prompt", "steps", "guidance"]) {
  $(id).value = store.get("form." + id, "");
  $(id).addEventListener("input", () => store.set("form." + id, $(id).value));
}
buildAspects();
applyConfig();
pollHealth();
