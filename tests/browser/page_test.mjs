// The web page of `fluxcpp serve` in Debian's headless Chromium (playwright-core, no browser download):
// generate (progress advanced, a preview per step, the final image), the queue (position from 1, cancel per
// job, 429 when full), history across a reload, the refused and unreachable states and their recovery, and
// screenshots at desktop and phone width. Run by scripts/browser_test.sh, which sets:
//   FLUXCPP  the fluxcpp binary       FLUX_TEST_MODEL  a model folder (fluxcpp make-test-model)
//   FLUX_TEST_MODEL_DEV (optional) a FLUX.1-dev test model: the API-key part then also checks guidance
//   FLUX_TEST_LORA_DIR (optional) a --lora-dir holding style_a.safetensors (fits the tiny model): checks the picker
//   SHOTS    the screenshot folder    CHROMIUM         the browser (default /usr/bin/chromium)
//   PAGE_HTML (optional) a file served as GET / instead of the built-in page, to try an edit without a rebuild
// Exits 1 if any check failed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.FLUXCPP, model = process.env.FLUX_TEST_MODEL, modelDev = process.env.FLUX_TEST_MODEL_DEV;
const shots = process.env.SHOTS || "logs/browser", loraDir = process.env.FLUX_TEST_LORA_DIR;
// Unlike the page's fallbacks (1 MP, 50 steps), so the limits shown must come from the server; 500 steps keep the
// long jobs running while the queue is checked.
const MAX_PIXELS = 384 * 384, MAX_STEPS = 500;
const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once("error", reject).listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- the server: started, stopped and started again on the same port ----
let server = null;
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
async function startServer(extra = [], modelDir = model) {
  const log = fs.openSync(path.join(shots, "server.log"), "a");
  server = spawn(bin, ["serve", "--model", modelDir, "--host", "127.0.0.1", "--port", String(port), "--queue-size", "1",
                       "--max-pixels", String(MAX_PIXELS), "--max-steps", String(MAX_STEPS), ...extra],
                 { stdio: ["ignore", log, log] });
  const exited = new Promise((r) => server.once("exit", r));
  const self = server;
  server.once("exit", (code, signal) => {
    if (server === self) check(false, `fluxcpp serve exited by itself: code ${code}, signal ${signal}`);
  });
  for (let i = 0; i < 600; ++i) {
    const r = await fetch(base + "/ready").catch(() => null);
    if (r && r.ok) return;
    if (await Promise.race([exited.then(() => true), sleep(100).then(() => false)]))
      throw new Error("fluxcpp serve exited; see server.log");
  }
  throw new Error("fluxcpp serve was not ready within 60 s");
}
async function stopServer() {
  const s = server;
  server = null;
  const exited = new Promise((r) => s.once("exit", r));
  s.kill("SIGTERM");
  await Promise.race([exited, sleep(10000).then(() => s.kill("SIGKILL"))]);
}
const getJson = async (p) => (await fetch(base + p)).json();

// ---- page helpers ----
const state = (page) => page.evaluate(() => ({
  status: document.getElementById("status").textContent,
  banner: document.getElementById("banner").hidden ? "" : document.getElementById("banner").dataset.kind,
  bannerText: document.getElementById("banner-text").textContent,
  goDisabled: document.getElementById("go").disabled,
}));
async function generate(page, { prompt, steps, size }) {
  await page.fill("#prompt", prompt);
  await page.fill("#steps", String(steps));
  if (size) await page.selectOption("#size", size);
  await page.focus("#prompt");
  await page.keyboard.press("Control+Enter");
}
// The values #bar's aria-valuenow took since the last call (a MutationObserver keeps every change).
async function watchBar(page) {
  await page.evaluate(() => {
    window.barValues = [];
    if (window.barObserver) return;
    const bar = document.getElementById("bar");
    window.barObserver = new MutationObserver(() => window.barValues.push(Number(bar.getAttribute("aria-valuenow"))));
    window.barObserver.observe(document.getElementById("bar"), { attributes: true, attributeFilter: ["aria-valuenow"] });
  });
}
// Page-side predicates (run in the browser).
const imageDone = () => document.getElementById("canvas").dataset.kind === "final" &&
                        /Done/.test(document.getElementById("status").textContent);
const jobRunning = () => /Step|Denois|Encod|Decod|Starting/.test(document.getElementById("status").textContent);
async function waitFor(page, fn, arg, what, timeout = 60000) {
  try { await page.waitForFunction(fn, arg, { timeout, polling: 100 }); console.log(`ok   ${what}`); return true; }
  catch {
    const events = await page.evaluate(() => (window.fluxcppEvents || []).slice(-12).join(" | "));
    check(false, `${what} (timed out; page: ${JSON.stringify(await state(page))}; last events: ${events})`);
    return false;
  }
}

fs.mkdirSync(shots, { recursive: true });
fs.rmSync(path.join(shots, "server.log"), { force: true });
async function newContext(options) {
  const context = await browser.newContext(options);
  if (process.env.PAGE_HTML)
    await context.route(/\/$/, (r) => r.fulfill({ contentType: "text/html", body: fs.readFileSync(process.env.PAGE_HTML) }));
  return context;
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"],
});
try {
  await startServer(loraDir ? ["--lora-dir", loraDir] : []);
  const config = await fetch(base + "/v1/config");
  const contract = config.ok;  // the server of issue 14's API (else the page's fallbacks are what is tested)
  const configJson = contract ? await config.json() : {};
  console.log(contract ? "server has GET /v1/config" : "server has no GET /v1/config: checking the page's fallbacks");

  const context = await newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  const pageErrors = [], badResponses = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // Expected: 404 /v1/config and 405 GET /v1/jobs (an older server), 429 / 503 on POST /v1/jobs (provoked
  // below), and on an older server 404 for remembered jobs the restarted server no longer knows.
  page.on("response", (r) => {
    const u = new URL(r.url()).pathname;
    const expected = u === "/v1/config" || u === "/v1/jobs" || (!contract && u.startsWith("/v1/jobs/"));
    if (r.status() >= 400 && !expected) badResponses.push(`${r.status()} ${u}`);
  });
  const posted = [];
  page.on("request", (r) => { if (r.method() === "POST") posted.push(r.postData() || ""); });

  await page.goto(base + "/");
  await waitFor(page, () => document.getElementById("server").dataset.state === "ready", null, "the server chip says ready");
  check(await page.$eval("#prompt", (e) => e.value === "" &&
        getComputedStyle(e, "::placeholder").color !== getComputedStyle(e).color),
        "the empty prompt shows a placeholder that does not look like text");
  if (contract) {
    const sizes = await page.$$eval("#size option", (os) => os.map((o) => o.value.split("x").map(Number)));
    check(sizes.length > 0 && sizes.every(([w, h]) => w * h <= MAX_PIXELS && w % 16 === 0 && h % 16 === 0),
          `every size offered is a multiple of 16 within --max-pixels ${MAX_PIXELS}: ${sizes.map((s) => s.join("x")).join(", ")}`);
    check(await page.$eval("#steps", (e) => e.max) === String(MAX_STEPS), `the steps box allows at most --max-steps ${MAX_STEPS}`);
  }

  // A seed above the server's 2^53 - 1 is refused by the page; 2^53 - 1 itself goes out as exact digits and comes back.
  await page.fill("#seed", "9007199254740992");
  const before = posted.length;
  await generate(page, { prompt: "a lighthouse at dusk", steps: 2 });
  check(await page.$eval("#form-error", (e) => !e.hidden && e.textContent.includes("Seed") &&
                                             e.textContent.includes("9007199254740991")),
        "a seed of 2^53 is refused by name on the page, with the server's range");
  check(posted.length === before, "nothing was sent for the bad seed");
  await page.fill("#seed", "9007199254740991");
  await generate(page, { prompt: "a lighthouse at dusk", steps: 2 });
  await waitFor(page, () => /Done/.test(document.getElementById("status").textContent) || !document.getElementById("banner").hidden,
                null, "a seed of 2^53 - 1 is sent");
  check(posted.some((p) => p.includes('"seed":9007199254740991')), "2^53 - 1 went out as exact digits");
  check(/Done/.test((await state(page)).status), "the server made the image for the largest seed");
  check(await page.$eval("#download", (a) => a.download) === "fluxcpp-9007199254740991.png", "the largest seed comes back exactly");
  await page.evaluate(() => document.getElementById("banner-close").click());
  await page.fill("#seed", "7");

  // Generate: the progress bar advanced, a preview per step, the final image.
  await watchBar(page);
  const smallest = await page.$eval("#size option", (o) => o.value);
  await generate(page, { prompt: "a lighthouse at dusk, oil painting", steps: 4, size: smallest });
  // Wait on the status too: until the page has the new job, the canvas still shows the last job's final image.
  if (await waitFor(page, () => document.getElementById("canvas").dataset.kind === "final" &&
                              /Done/.test(document.getElementById("status").textContent) &&
                              document.getElementById("image").naturalWidth > 0, null, "the final image appeared")) {
    const bar = await page.evaluate(() => window.barValues);
    check(bar.some((v) => v > 0 && v < 100) && bar[bar.length - 1] === 100, `the progress bar advanced: ${bar.join(" ")}`);
    check(await page.$$eval("#previews img", (is) => is.length) === 4, "one preview per step (4)");
    check(await page.$eval("#download", (a) => a.download) === "fluxcpp-7.png", "the download's file name carries the seed");
    check(!(await page.$eval("#result-actions", (e) => e.hidden)), "download and copy-parameters are shown");
    check(/Done/.test((await state(page)).status), "the status says done");
    await page.click("#copy");
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(copied.startsWith("a lighthouse at dusk, oil painting\n") && /Steps: 4, Seed: 7, Size: \d+x\d+/.test(copied),
          `"copy parameters" copies prompt, steps, seed and size: ${JSON.stringify(copied)}`);
  }
  check(posted.some((p) => p.includes('"seed":7')), "the seed went out as digits");

  // Queue: a long job runs, a second waits (position 1), a third is refused with 429; cancel both.
  await page.fill("#seed", "");
  const largest = await page.$$eval("#size option", (os, max) => os.map((o) => o.value)
    .filter((v) => v.split("x").reduce((a, b) => a * b) <= max).pop(), MAX_PIXELS);
  await generate(page, { prompt: "a long job", steps: MAX_STEPS, size: largest });
  await waitFor(page, jobRunning, null, "the long job started");
  await waitFor(page, () => /^about \d+ (s|min) left$/.test(document.getElementById("eta").textContent), null,
                "an ETA from the measured step times is shown");
  await generate(page, { prompt: "a waiting job", steps: MAX_STEPS, size: largest });
  await waitFor(page, () => /^Queued/.test(document.getElementById("status").textContent), null, "the second job is queued");
  const queuedText = (await state(page)).status;
  check(contract ? queuedText === "Queued: position 1" : /^Queued/.test(queuedText), `queue position counts from 1: "${queuedText}"`);
  await waitFor(page, () => document.querySelectorAll("#queue li").length === 2, null, "the queue view lists both jobs");
  await page.screenshot({ path: path.join(shots, "desktop-queue.png") });
  await generate(page, { prompt: "one job too many", steps: 2, size: smallest });
  await waitFor(page, () => document.getElementById("banner").dataset.kind === "refused", null, "a full queue shows the refused state");
  const refused = await state(page);
  check(/queue is full/.test(refused.bannerText) && !refused.goDisabled, `429 in plain words, Generate usable: "${refused.bannerText}"`);
  await page.click("#cancel");
  await waitFor(page, () => document.getElementById("status").textContent === "Cancelled.", null, "Cancel cancels the waiting job");
  await waitFor(page, () => document.querySelectorAll("#queue li").length === 1, null, "the queue view drops the cancelled job");
  await waitFor(page, (n) => new RegExp(`^Step \\d+ of ${n}$`).test(document.getElementById("status").textContent), MAX_STEPS,
                "the running job takes the stage back after the cancel", 10000);
  await page.click("#queue li button");
  await waitFor(page, () => document.querySelectorAll("#queue li").length === 0, null, "the queue view's Cancel cancels the running job");
  const list = contract ? (await getJson("/v1/jobs")).data : [];
  if (contract) check(list.filter((j) => j.status === "cancelled").length === 2, "the server reports both jobs cancelled");

  // The refused state recovers: the next image is made and the banner goes.
  await generate(page, { prompt: "a red fox in snow", steps: 3, size: smallest });
  await waitFor(page, () => document.getElementById("canvas").dataset.kind === "final" && /Done/.test(document.getElementById("status").textContent) &&
                          document.getElementById("banner").hidden, null, "after the refusal the next image is made and the banner is gone");

  // Image to image: a chosen init image goes out as a data URL with its strength.
  if (!(await page.$eval("#init-field", (e) => e.hidden))) {
    const png = await page.screenshot({ clip: { x: 0, y: 0, width: 96, height: 96 } });
    await page.setInputFiles("#init-file", { name: "init.png", mimeType: "image/png", buffer: png });
    await waitFor(page, () => !document.getElementById("init-preview").hidden, null, "the init image is previewed");
    await page.$eval("#strength", (e) => { e.value = "0.5"; e.dispatchEvent(new Event("input")); });
    await generate(page, { prompt: "the same, as a watercolour", steps: 4, size: smallest });
    await waitFor(page, imageDone, null, "an image-to-image job finished");
    check(posted.some((p) => p.includes('"image":"data:image/png;base64,') && p.includes('"strength":0.5')),
          "the init image and its strength went out");
    await page.click("#init-clear");
  }

  // The LoRA picker: the server's adapters, sent with their strength.
  if (loraDir) {
    await waitFor(page, () => !document.getElementById("lora-field").hidden &&
                              document.querySelector("#loras input[value=style_a]"), null, "the LoRA picker lists style_a");
    await page.check("#loras input[value=style_a]");
    await page.fill("#loras .lora input[type=number]", "0.8");
    await generate(page, { prompt: "with a style", steps: 2, size: smallest });
    await waitFor(page, imageDone, null, "a job with a LoRA finished");
    check(posted.some((p) => p.includes('"loras":[{"name":"style_a","strength":0.8}]')), "the chosen LoRA and its strength went out");
    await page.uncheck("#loras input[value=style_a]");
  }

  // A 503 "still loading" refusal (answered here by the test) clears by itself once /health says ready.
  await page.route("**/v1/jobs", (route) => route.request().method() === "POST"
    ? route.fulfill({ status: 503, contentType: "application/json", headers: { "Retry-After": "1" },
                      body: JSON.stringify({ error: { message: "the model is loading", type: "server_error", param: null,
                                                      code: "model_not_ready" } }) })
    : route.continue());
  await generate(page, { prompt: "too early", steps: 2, size: smallest });
  await waitFor(page, () => document.getElementById("banner").dataset.kind === "loading", null,
                "a 503 while loading shows the loading state");
  await waitFor(page, () => document.getElementById("banner").hidden, null, "the loading message clears once the server is ready", 10000);
  await page.unroute("**/v1/jobs");

  // History survives a reload.
  await page.reload();
  await waitFor(page, () => [...document.querySelectorAll("#history .card img")].filter((i) => i.naturalWidth > 0).length >= 2, null,
                "after a reload the history shows both finished images");
  await page.screenshot({ path: path.join(shots, "desktop.png"), fullPage: true });

  // Phone width (390 px), light and dark: a finished image, the controls and the history; nothing wider than the screen.
  for (const scheme of ["light", "dark"]) {
    const phone = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, colorScheme: scheme });
    const p = await phone.newPage();
    await p.goto(base + "/");
    await waitFor(p, () => document.getElementById("server").dataset.state === "ready" && document.querySelectorAll("#history .card").length > 0,
                  null, `phone (${scheme}): ready with history`);
    await p.click("#history .card");
    await waitFor(p, () => document.getElementById("canvas").dataset.kind === "final" && document.getElementById("image").naturalWidth > 0, null,
                  `phone (${scheme}): a history image opens on the stage`);
    check(await p.evaluate(() => document.documentElement.scrollWidth <= 390), `phone (${scheme}): no horizontal scrolling at 390 px`);
    await p.screenshot({ path: path.join(shots, `phone-${scheme}.png`), fullPage: true });
    await phone.close();
  }
  const dark = await newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "dark" });
  const d = await dark.newPage();
  await d.goto(base + "/");
  await waitFor(d, () => document.querySelectorAll("#history .card img").length > 0, null, "desktop (dark): history");
  await d.screenshot({ path: path.join(shots, "desktop-dark.png"), fullPage: true });

  // Unreachable: a job running when the server stops is not shown as the user's cancel; Generate while it is
  // down gives a clear message with usable buttons; the page recovers when the server is back.
  await generate(page, { prompt: "interrupted", steps: MAX_STEPS, size: largest });
  await waitFor(page, jobRunning, null, "the job to interrupt started");
  await stopServer();
  await waitFor(page, () => !document.getElementById("banner").hidden, null, "the stop is shown");
  const stopped = await state(page);
  check(stopped.status !== "Cancelled." && ["failed", "unreachable"].includes(stopped.banner),
        `a server stop is not a user cancel: ${JSON.stringify(stopped)}`);
  await generate(page, { prompt: "while it is down", steps: 2, size: smallest });
  // Wait on the status too: the /health poll may have shown "unreachable" before this POST failed.
  await waitFor(page, () => document.getElementById("banner").dataset.kind === "unreachable" && /reach/.test(document.getElementById("banner-text").textContent) &&
                            !/Submitting/.test(document.getElementById("status").textContent),
                null, "Generate with the server down shows the unreachable state");
  const down = await state(page);
  check(!down.goDisabled && !/Submitting/.test(down.status) && !(await page.$eval("#banner-retry", (b) => b.hidden)),
        `buttons usable, not stuck on submitting, a Retry offered: ${JSON.stringify(down)}`);
  await page.screenshot({ path: path.join(shots, "desktop-unreachable.png") });
  await startServer();
  await waitFor(page, () => document.getElementById("server").dataset.state === "ready" && document.getElementById("banner").hidden, null,
                "when the server is back the unreachable state clears", 15000);
  await generate(page, { prompt: "after the restart", steps: 2, size: smallest });
  await waitFor(page, imageDone, null, "after the restart an image is made");
  check(pageErrors.length === 0, `no uncaught errors in the page: ${pageErrors.join("; ")}`);
  check(badResponses.length === 0, `no failed requests besides the test's own: ${badResponses.join("; ")}`);

  // An older server (no GET /v1/config, no GET /v1/jobs; played here by the test): the page falls back to its
  // own limits and to the jobs this browser remembers, and still generates and keeps its history.
  const old = await newContext({ viewport: { width: 1280, height: 900 } });
  await old.route("**/v1/config", (r) => r.fulfill({ status: 404, contentType: "application/json", body: '{"error":{"message":"no route"}}' }));
  await old.route("**/v1/jobs", (r) => r.request().method() === "GET"
    ? r.fulfill({ status: 405, contentType: "application/json", body: '{"error":{"message":"method GET not allowed"}}' })
    : r.continue());
  const o = await old.newPage();
  await o.goto(base + "/");
  await waitFor(o, () => document.getElementById("server").dataset.state === "ready" &&
                         document.querySelectorAll("#size option").length > 0, null, "older server: the page is ready with sizes");
  await generate(o, { prompt: "on an older server", steps: 2, size: "256x256" });
  await waitFor(o, imageDone, null, "older server: an image is made");
  await o.reload();
  await waitFor(o, () => [...document.querySelectorAll("#history .card img")].some((i) => i.naturalWidth > 0), null,
                "older server: after a reload the remembered job is in the history");
  await old.close();

  // A server with --api-key: the page asks for the key on the 401, keeps it, and sends it (the job's events too).
  if ("auth" in configJson) {
    await stopServer();
    await startServer(["--api-key", "s3cret"], modelDev || model);
    const keyed = await newContext({ viewport: { width: 1280, height: 900 } });
    const k = await keyed.newPage();
    const keyedPosts = [];
    k.on("request", (r) => { if (r.method() === "POST") keyedPosts.push(r.postData() || ""); });
    await k.goto(base + "/");
    await waitFor(k, () => !document.getElementById("key-form").hidden, null, "with --api-key the page asks for the key");
    await k.fill("#key", "s3cret");
    await k.click("#key-form button[type=submit]");
    check(await k.$eval("#lora-field", (e) => e.hidden), "a server without LoRAs shows no LoRA picker");
    await waitFor(k, (n) => document.getElementById("steps").max === String(n), MAX_STEPS, "with the key the server's limits load");
    if (modelDev) {  // a dev model: guidance is offered and sent
      await waitFor(k, () => !document.getElementById("guidance-field").hidden, null, "a dev model offers guidance");
      await k.fill("#guidance", "4.5");
    }
    await generate(k, { prompt: "with a key", steps: 2, size: "256x256" });
    await waitFor(k, imageDone, null, "with the key an image is made (its events read with the key)");
    check(await k.evaluate(() => JSON.parse(localStorage.getItem("fluxcpp.apiKey"))) === "s3cret", "the key is kept in localStorage");
    if (modelDev) check(keyedPosts.some((p) => p.includes('"guidance":4.5')), "the guidance went out");
    await k.reload();
    await waitFor(k, () => [...document.querySelectorAll("#history .card img")].some((i) => i.naturalWidth > 0), null,
                  "after a reload the kept key loads the history");
    await keyed.close();
  }
} catch (e) {
  check(false, `the test itself: ${e.stack || e}`);
} finally {
  await browser.close();
  if (server) await stopServer();
}
console.log(failures.length ? `browser test: ${failures.length} check(s) FAILED`
                            : `browser test: all checks passed; screenshots in ${shots}`);
process.exit(failures.length ? 1 : 0);
