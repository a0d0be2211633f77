// The page's script: talks to the API of `fluxcpp serve` (GET /v1/config, /health, /v1/loras, /v1/jobs; POST
// /v1/jobs; job events read with fetch() + a stream reader, because EventSource cannot send an API key).
// Works with a server that lacks /v1/config or GET /v1/jobs (404/405): it falls back to built-in limits and to
// the jobs this browser remembers. Seeds stay decimal strings end to end (no double ever rounds one).
"use strict";
const $ = (id) => document.getElementById(id);
const store = {
  get(key, fallback = null) {
    try { const v = localStorage.getItem("fluxcpp." + key); return v === null ? fallback : JSON.parse(v); }
    catch { return fallback; }
  },
  set(key, value) { try { localStorage.setItem("fluxcpp." + key, JSON.stringify(value)); } catch { /* private mode */ } },
};

const ASPECTS = [["1:1", 1, 1], ["4:3", 4, 3], ["3:4", 3, 4], ["3:2", 3, 2], ["2:3", 2, 3], ["16:9", 16, 9],
                 ["9:16", 9, 16], ["Custom", 0, 0]];
const SIDES = [256, 384, 512, 640, 768, 896, 1024, 1280, 1536, 2048];  // square sides of the size presets
const STAGES = { encode_text: "Encoding the prompt", encode_image: "Encoding the init image", denoise: "Denoising",
                 decode: "Decoding the image" };
// Used while GET /v1/config is missing (an older server) and for fields that are null while the model loads.
const FALLBACK = { max_pixels: 1024 * 1024, max_steps: 50, default_steps: null, default_width: 512, default_height: 512,
                   size_multiple: 16, min_side: 64, max_seed: 2 ** 53 - 1, guidance: false, default_guidance: null,
                   img2img: true, max_image_pixels: 4096 * 4096, loras: true, max_loras: 8, auth: false, model: null, variant: null };

let config = { ...FALLBACK };
let serverState = "checking";          // checking | loading | ready | error | unreachable
let jobsApi = true;                    // false: the server has no GET /v1/jobs, use the remembered ids
const jobs = new Map();                // id -> the jobs this page submitted (and follows over SSE)
let focus = null;                      // the job the stage shows
let shown = null;                      // {seed, params, url} of the image on the stage
let initImage = null;                  // data: URL of the init image
let retryAction = null;
const thumbs = new Map();              // job id -> object URL of its thumbnail

class Unreachable extends Error {}
class FieldError extends Error { constructor(field, message) { super(message); this.field = field; } }

// fetch() with the API key; a network failure becomes Unreachable (the page shows it; never an uncaught error).
async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = store.get("apiKey");
  if (key) headers.set("Authorization", "Bearer " + key);
  let r;
  try { r = await fetch(path, { ...init, headers, cache: "no-store" }); }
  catch (e) { if (e.name === "AbortError") throw e; throw new Unreachable(e.message || String(e)); }
  if (r.status === 401) askForKey();
  return r;
}
// JSON.parse with "seed" numbers kept as strings (a u64 seed would be rounded by a double).
function parseJson(text) { return JSON.parse(text.replace(/("seed"\s*:\s*)(\d+)/g, '$1"$2"')); }
async function readJson(r) { try { return parseJson(await r.text()); } catch { return null; } }
const errorText = (body, status) => (body && body.error && body.error.message) || `HTTP ${status}`;

// ---- banner: the states loading (503), unreachable, refused, failed ----
function showBanner(kind, text, retry = null) {
  $("banner").hidden = false;
  $("banner").dataset.kind = kind;
  $("banner-text").textContent = text;
  retryAction = retry;
  $("banner-retry").hidden = !retry;
}
function hideBanner(...kinds) {
  if (!kinds.length || kinds.includes($("banner").dataset.kind)) { $("banner").hidden = true; $("banner").dataset.kind = ""; }
}
$("banner-close").addEventListener("click", () => hideBanner());
$("banner-retry").addEventListener("click", () => { const f = retryAction; hideBanner(); if (f) f(); });

function showUnreachable(what, retry) {
  serverState = "unreachable";
  renderChip(null);
  showBanner("unreachable", `Cannot reach the server (${what}). Check that fluxcpp serve is running; ` +
             "the page reconnects by itself when it is back.", retry);
}
function showRefusal(r, body) {
  const m = errorText(body, r.status);
  const code = body && body.error && body.error.code;
  markField(body && body.error && body.error.param);
  if (r.status === 401) return showBanner("refused", "This server needs an API key: enter it above, then try again.");
  if (r.status === 429) {
    const after = r.headers.get("Retry-After");
    const when = after ? `; try again in ${after} s` : "";
    return showBanner("refused", `The queue is full, so the server did not take this image${when}. (${m})`, generate);
  }
  if (r.status === 413) return showBanner("refused", `The request is too large for this server (an init image?): ${m}`);
  if (r.status === 503 && code === "model_not_ready")
    return showBanner("loading", "The model is still loading; generate again once it is ready (this message then goes away).");
  if (r.status === 503) return showBanner("refused", `The server is not taking images right now: ${m}`, generate);
  showBanner("refused", `The server refused this request: ${m}`);
}

// ---- the server chip and load progress (GET /health) ----
const percent = (h) => `${Math.round(100 * (h.load_progress || 0))}%`;
function renderChip(h) {
  const chip = $("server");
  chip.dataset.state = serverState;
  if (serverState === "unreachable") chip.textContent = "server unreachable";
  else if (serverState === "loading") chip.textContent = `loading ${h.component || "the model"} ${percent(h)}`;
  else if (serverState === "error") chip.textContent = "model failed to load";
  else if (serverState === "ready") {
    const name = h.model ? " · " + h.model.split(" (")[0].split("/").pop() : "";
    chip.textContent = `ready${name}${h.queue_depth ? ` · ${h.queue_depth} waiting` : ""}`;
  }
}
async function pollHealth() {
  const before = serverState;
  try {
    const h = await readJson(await api("/health"));
    if (!h || !h.status) throw new Unreachable("/health answered something else than its JSON");
    serverState = h.status === "loading" ? "loading" : h.status === "error" ? "error" : "ready";
    renderChip(h);
    hideBanner("unreachable");
    if (serverState === "ready") hideBanner("loading");
    if (serverState === "error") showBanner("failed", `The model failed to load: ${h.error || "see the server log"}`);
    if (serverState === "loading" && !focus) setStatus(`Loading the model: ${h.component || ""} ${percent(h)}`);
    if (serverState !== before && (serverState === "ready" || before === "unreachable" || before === "checking")) {
      if (serverState === "ready" && !focus) setStatus("Ready when you are.");
      await loadServerInfo();
    }
  } catch (e) {
    if (!(e instanceof Unreachable)) console.error(e);
    else if (before !== "unreachable") showUnreachable("no answer from /health", null);
  } finally {
    setTimeout(pollHealth, serverState === "ready" ? 3000 : 1000);
  }
}

// ---- limits from GET /v1/config ----
async function loadServerInfo() {
  try {
    const r = await api("/v1/config");
    if (r.ok) {
      const c = await readJson(r) || {};
      config = { ...FALLBACK };
      for (const [k, v] of Object.entries(c)) if (v !== null && v !== undefined) config[k] = v;
    }
  } catch (e) { if (!(e instanceof Unreachable)) throw e; }
  applyConfig();
  await loadLoras();
  await refreshJobs();
}
function applyConfig() {
  $("steps").max = config.max_steps;
  $("steps").placeholder = config.default_steps ? `default (${config.default_steps})` : "default";
  $("guidance-field").hidden = !config.guidance;
  $("guidance").placeholder = config.default_guidance !== null ? `default (${config.default_guidance})` : "default";
  $("init-field").hidden = config.img2img === false;
  $("key-button").hidden = !config.auth && !store.get("apiKey");
  for (const id of ["width", "height"]) { $(id).step = config.size_multiple; $(id).min = config.min_side; }
  buildSizes();
}

// ---- size: aspect presets within max_pixels, or custom ----
const roundTo = (v, m) => Math.max(config.min_side, Math.round(v / m) * m);
function presets(a, b) {
  const m = config.size_multiple, out = [];
  const add = (w, h) => { if (w * h <= config.max_pixels && !out.some((s) => s[0] === w && s[1] === h)) out.push([w, h]); };
  for (const side of SIDES) add(roundTo(side * Math.sqrt(a / b), m), roundTo(side * Math.sqrt(b / a), m));
  // The largest size of this shape that fits, so a low --max-pixels still offers one.
  let w = Math.floor(Math.sqrt(config.max_pixels * a / b) / m) * m, h = Math.floor(w * b / a / m) * m;
  if (h >= config.min_side && w >= config.min_side) add(w, h);
  return out.sort((x, y) => x[0] * x[1] - y[0] * y[1]);
}
function currentAspect() { return store.get("aspect", "1:1"); }
function buildAspects() {
  for (const [name] of ASPECTS) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = name; b.dataset.aspect = name; b.setAttribute("role", "radio");
    b.addEventListener("click", () => { store.set("aspect", name); buildSizes(); });
    $("aspects").append(b);
  }
}
function buildSizes() {
  const name = currentAspect();
  for (const b of $("aspects").children) b.setAttribute("aria-checked", String(b.dataset.aspect === name));
  const custom = name === "Custom";
  $("size").hidden = custom;
  $("custom-size").hidden = !custom;
  if (!custom) {
    const [, a, b] = ASPECTS.find((x) => x[0] === name) || ASPECTS[0];
    const wanted = store.get("size") || `${config.default_width}x${config.default_height}`;
    const list = presets(a, b);
    $("size").replaceChildren(...list.map(([w, h]) => new Option(`${w} × ${h}  (${(w * h / 1e6).toFixed(2)} MP)`, `${w}x${h}`)));
    const target = config.default_width * config.default_height;
    const best = list.find(([w, h]) => `${w}x${h}` === wanted) ||
                 list.reduce((p, s) => (Math.abs(s[0] * s[1] - target) < Math.abs(p[0] * p[1] - target) ? s : p), list[0]);
    if (best) $("size").value = `${best[0]}x${best[1]}`;
  } else {
    if (!$("width").value) $("width").value = config.default_width;
    if (!$("height").value) $("height").value = config.default_height;
  }
  sizeHint();
}
function chosenSize() {
  if (currentAspect() !== "Custom") { const [w, h] = ($("size").value || "0x0").split("x").map(Number); return [w, h]; }
  return [Number($("width").value), Number($("height").value)];
}
function sizeProblem([w, h]) {
  const m = config.size_multiple;
  for (const [v, name] of [[w, "width"], [h, "height"]]) {
    if (!Number.isInteger(v) || v < config.min_side || v % m)
      return [name, `${name[0].toUpperCase() + name.slice(1)}: expected a multiple of ${m} of at least ` +
                    `${config.min_side}, got ${v || "nothing"}`];
  }
  if (w * h > config.max_pixels)
    return ["width", `Size ${w}×${h} is ${w * h} pixels; this server allows at most ${config.max_pixels} ` +
                     `(${(config.max_pixels / 1e6).toFixed(2)} MP)`];
  return null;
}
function sizeHint() {
  const s = chosenSize(), p = sizeProblem(s);
  $("size-hint").textContent = p ? p[1] : `up to ${(config.max_pixels / 1e6).toFixed(2)} MP on this server`;
  $("size-hint").classList.toggle("error", !!p);
}
$("size").addEventListener("change", () => { store.set("size", $("size").value); sizeHint(); });
for (const id of ["width", "height"]) $(id).addEventListener("input", sizeHint);

// ---- seed ----
function seedValue() {
  const v = $("seed").value.trim();
  if (!v) return null;
  const max = BigInt(config.max_seed);  // the server's range (2^53 - 1), sent as digits so no double rounds it
  if (!/^\d+$/.test(v) || BigInt(v) > max)
    throw new FieldError("seed", `Seed: expected a whole number from 0 to ${max}, got "${v}"`);
  return BigInt(v).toString();
}
$("seed").addEventListener("input", () => {
  let bad = false;
  try { seedValue(); } catch { bad = true; }
  $("seed").setAttribute("aria-invalid", String(bad));
});
$("seed-random").addEventListener("click", () => { $("seed").value = ""; $("seed").setAttribute("aria-invalid", "false"); });
$("seed-reuse").addEventListener("click", () => { if (shown) $("seed").value = shown.seed; });

// ---- LoRAs (GET /v1/loras; hidden when the server has none) ----
async function loadLoras() {
  let list = [];
  try { const r = await api("/v1/loras"); if (r.ok) list = ((await readJson(r)) || {}).data || []; }
  catch (e) { if (!(e instanceof Unreachable)) throw e; }
  const box = $("loras");
  const checked = new Set([...box.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value));
  box.replaceChildren(...list.map((l) => {
    const row = document.createElement("div");
    row.className = "lora";
    row.innerHTML = '<label class="inline"><input type="checkbox"> <span></span></label>' +
                    '<input type="number" step="0.05" min="-10" max="10" value="1" aria-label="strength">';
    row.querySelector("input").value = l.name;
    row.querySelector("input").checked = checked.has(l.name);
    row.querySelector("span").textContent = l.format ? `${l.name} (${l.format})` : l.name;
    return row;
  }));
  $("lora-field").hidden = list.length === 0 || config.loras === false;
}
function chosenLoras() {
  const out = [];
  for (const row of $("loras").children) {
    const [check, strength] = row.querySelectorAll("input");
    if (check.checked) out.push({ name: check.value, strength: Number(strength.value) });
  }
  if (out.length > config.max_loras) throw new FieldError("loras", `LoRA: at most ${config.max_loras} at once, got ${out.length}`);
  return out;
}

// ---- init image (img2img) ----
function setInitImage(file) {
  if (!file) return;
  if (!/^image\//.test(file.type))
    return showFieldError(new FieldError("image", `Init image: expected a PNG, JPEG or WebP file, got "${file.type || file.name}"`));
  const reader = new FileReader();
  reader.onload = () => {
    initImage = reader.result;
    $("init-preview").src = initImage; $("init-preview").hidden = false;
    $("drop-text").textContent = file.name; $("init-controls").hidden = false;
  };
  reader.readAsDataURL(file);
}
function clearInitImage() {
  initImage = null; $("init-file").value = "";
  $("init-preview").hidden = true; $("init-preview").removeAttribute("src");
  $("drop-text").textContent = "Drop an image here or click to choose"; $("init-controls").hidden = true;
}
$("init-file").addEventListener("change", () => setInitImage($("init-file").files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  setInitImage(e.dataTransfer.files[0]);
});
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("init-file").click(); } });
$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("init-clear").addEventListener("click", (e) => { e.preventDefault(); clearInitImage(); });

// ---- the request ----
function markField(param) {
  const map = { prompt: "prompt", size: "size", width: "width", height: "height", steps: "steps", seed: "seed",
                guidance: "guidance", image: "drop", strength: "strength", loras: "loras" };
  if (param && map[param] && $(map[param])) $(map[param]).setAttribute("aria-invalid", "true");
}
function showFieldError(e) { markField(e.field); $("form-error").textContent = e.message; $("form-error").hidden = false; }
function clearFieldErrors() {
  $("form-error").hidden = true;
  for (const el of document.querySelectorAll("[aria-invalid=true]")) el.setAttribute("aria-invalid", "false");
}
// Returns [JSON text, params]; the seed is spliced in as digits so that no double ever holds it.
function buildRequest() {
  const prompt = $("prompt").value.trim();
  if (!prompt) throw new FieldError("prompt", "Prompt: describe the image you want (the box is empty)");
  const size = chosenSize(), problem = sizeProblem(size);
  if (problem) throw new FieldError(problem[0], problem[1]);
  const body = { prompt, width: size[0], height: size[1], preview: true };
  if ($("steps").value) {
    const s = Number($("steps").value);
    if (!Number.isInteger(s) || s < 1 || s > config.max_steps)
      throw new FieldError("steps", `Steps: expected a whole number from 1 to ${config.max_steps}, got "${$("steps").value}"`);
    body.steps = s;
  }
  if (config.guidance && $("guidance").value) {
    const g = Number($("guidance").value);
    if (!Number.isFinite(g) || g < 0 || g > 100)
      throw new FieldError("guidance", `Guidance: expected 0 to 100, got "${$("guidance").value}"`);
    body.guidance = g;
  }
  const loras = $("lora-field").hidden ? [] : chosenLoras();
  if (loras.length) body.loras = loras;
  if (initImage && !$("init-field").hidden) { body.image = initImage; body.strength = Number($("strength").value); }
  const seed = seedValue();
  const text = JSON.stringify(body);
  return [seed === null ? text : `${text.slice(0, -1)},"seed":${seed}}`, { ...body, image: undefined, seed }];
}

let submitting = false;
async function generate() {
  if (submitting) return;
  clearFieldErrors();
  let text, params;
  try { [text, params] = buildRequest(); }
  catch (e) { if (e instanceof FieldError) return showFieldError(e); throw e; }
  submitting = true;
  $("go").disabled = true;
  setStatus("Submitting…");
  try {
    const r = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: text });
    const body = await readJson(r);
    if (!r.ok) { setStatus("Not started."); return showRefusal(r, body); }
    hideBanner("refused", "unreachable", "failed", "loading");
    follow({ id: body.id, params, status: "queued", position: body.position, step: 0, total: params.steps || 0 });
  } catch (e) {
    if (!(e instanceof Unreachable)) throw e;
    setStatus("Not started.");
    showUnreachable("the request did not get through", generate);
  } finally {
    submitting = false;
    $("go").disabled = false;
  }
}
$("form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
});
$("cancel").addEventListener("click", () => { if (focus) cancelJob(focus.id); });

async function cancelJob(id) {
  if (jobs.has(id)) jobs.get(id).cancelRequested = true;
  try {
    const r = await api(`/v1/jobs/${id}`, { method: "DELETE" });
    if (!r.ok && r.status !== 409) showRefusal(r, await readJson(r));
  } catch (e) { if (!(e instanceof Unreachable)) throw e; showUnreachable("the cancel did not get through", () => cancelJob(id)); }
  refreshJobs();
}
