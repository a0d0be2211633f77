#include "server/web_page.h"

namespace flux::server {

const char* web_page_html() {
  return R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fluxcpp</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #222; }
  textarea { width: 100%; height: 5em; font: inherit; }
  label { margin-right: 1em; }
  input[type=number] { width: 6em; }
  progress { width: 100%; height: 1.2em; }
  #status { color: #555; min-height: 1.4em; }
  img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
  #health { font-size: 0.85em; color: #777; }
</style>
</head>
<body>
<h1>fluxcpp</h1>
<div id="health">checking the server...</div>
<form id="form">
  <p><textarea id="prompt" placeholder="a photo of a cat wearing a tiny hat">a photo of a cat wearing a tiny hat</textarea></p>
  <p>
    <label>size <select id="size">
      <option>256x256</option><option selected>512x512</option><option>768x768</option><option>1024x1024</option>
      <option>1024x768</option><option>768x1024</option></select></label>
    <label>steps <input id="steps" type="number" min="1" max="100" placeholder="default"></label>
    <label>seed <input id="seed" type="number" min="0" placeholder="random"></label>
    <button id="go" type="submit">Generate</button>
    <button id="cancel" type="button" disabled>Cancel</button>
  </p>
  <p id="lora-picker" hidden>
    <label>LoRA <select id="lora"><option value="">none</option></select></label>
    <label>strength <input id="lora-strength" type="number" min="-10" max="10" step="0.05" value="1"></label>
  </p>
</form>
<progress id="bar" max="1" value="0"></progress>
<div id="status"></div>
<p><img id="image" alt=""></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let job = null, source = null;

async function health() {
  try {
    const h = await (await fetch("/health")).json();
    $("health").textContent = h.status === "loading"
      ? `loading ${h.component || ""} ${(100 * h.load_progress).toFixed(0)}%`
      : `${h.status}${h.model ? ": " + h.model : ""} (queue: ${h.queue_depth})`;
  } catch (e) { $("health").textContent = "server unreachable"; }
}
setInterval(health, 2000); health();

// The LoRA picker: shown only when the server lists adapters (serve --lora-dir).
(async () => {
  try {
    const list = (await (await fetch("/v1/loras")).json()).data || [];
    for (const l of list) $("lora").add(new Option(`${l.name} (${l.format})`, l.name));
    $("lora-picker").hidden = list.length === 0;
  } catch (e) { /* no picker */ }
})();

function finish(text) {
  $("status").textContent = text;
  $("go").disabled = false; $("cancel").disabled = true;
  if (source) { source.close(); source = null; }
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { prompt: $("prompt").value, size: $("size").value, preview: true };
  if ($("steps").value) body.steps = Number($("steps").value);
  if ($("seed").value) body.seed = Number($("seed").value);
  if ($("lora").value) body.loras = [{ name: $("lora").value, strength: Number($("lora-strength").value) }];
  $("go").disabled = true; $("bar").value = 0; $("status").textContent = "submitting...";
  const r = await fetch("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) { finish(j.error ? j.error.message : "error " + r.status); return; }
  job = j.id; $("cancel").disabled = false;
  source = new EventSource(`/v1/jobs/${job}/events`);
  source.addEventListener("queued", (ev) => {
    $("status").textContent = `queued (position ${JSON.parse(ev.data).position})`;
  });
  source.addEventListener("started", () => { $("status").textContent = "started"; });
  source.addEventListener("step", (ev) => {
    const d = JSON.parse(ev.data);
    if (d.total > 0) $("bar").value = d.step / d.total;
    $("status").textContent = `${d.stage} ${d.step}/${d.total} (${d.elapsed.toFixed(1)} s)`;
    if (d.preview) $("image").src = "data:image/png;base64," + d.preview;
  });
  source.addEventListener("completed", (ev) => {
    const d = JSON.parse(ev.data);
    $("bar").value = 1;
    $("image").src = `/v1/jobs/${job}/image`;
    finish(`done in ${d.timings.total.toFixed(1)} s (seed ${d.seed})`);
  });
  source.addEventListener("failed", (ev) => finish("failed: " + JSON.parse(ev.data).error));
  source.addEventListener("cancelled", () => finish("cancelled"));
  source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) finish("connection lost"); };
});

$("cancel").addEventListener("click", async () => {
  if (job) await fetch(`/v1/jobs/${job}`, { method: "DELETE" });
});
</script>
</body>
</html>
)html";
}

}  // namespace flux::server
