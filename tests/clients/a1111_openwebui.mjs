// Speaks to `fluxcpp serve`'s /sdapi/v1 the way Open WebUI's AUTOMATIC1111 image engine does, then checks what a
// user of Open WebUI would get. Written from reading open-webui/open-webui backend/open_webui/routers/images.py
// (no code taken); the calls it mirrors, in Open WebUI's order:
//   verify_url()         GET  /sdapi/v1/options, header `authorization` ('' or 'Basic base64(user:pass)'),
//                        only the status matters (raise_for_status)
//   get_models()         GET  /sdapi/v1/sd-models -> [{id: title, name: model_name}]
//   set_image_model()    GET  /sdapi/v1/options; when model != options.sd_model_checkpoint, the WHOLE options
//                        object is posted back with sd_model_checkpoint changed (POST /sdapi/v1/options, raise_for_status)
//   get_image_model()    GET  /sdapi/v1/options -> options.sd_model_checkpoint
//   image_generations()  POST /sdapi/v1/txt2img {prompt, batch_size: n, width, height (from IMAGE_SIZE "WxH"),
//                        steps (when IMAGE_STEPS is set), negative_prompt (when given), ...AUTOMATIC1111_PARAMS};
//                        the reply is read without a status check: each of res.images is base64 without a data: prefix
//                        (so taken as image/png) and res.info is stored as the file's metadata.
// Open WebUI itself does not poll progress; a user of the A1111 web UI sees it, so this check also polls
// GET /sdapi/v1/progress while the generation runs and requires a step preview (current_image) along the way.
//
//   node a1111_openwebui.mjs BASE_URL        (env A1111_API_AUTH=user:pass sends Basic auth as Open WebUI does)
import assert from 'node:assert/strict';

const base = (process.argv[2] || process.env.FLUX_URL || '').replace(/\/$/, '');
if (!base) {
  console.error('usage: node a1111_openwebui.mjs BASE_URL');
  process.exit(2);
}
const apiAuth = process.env.A1111_API_AUTH;
const authorization = apiAuth ? `Basic ${Buffer.from(apiAuth, 'utf8').toString('base64')}` : '';
// Open WebUI's admin settings for this engine (IMAGE_SIZE, IMAGE_STEPS, AUTOMATIC1111_PARAMS).
const imageSize = process.env.IMAGE_SIZE || '256x256';
const imageSteps = Number(process.env.IMAGE_STEPS || 24);
const a1111Params = { cfg_scale: 7, sampler_name: 'Euler', scheduler: 'Automatic' };

async function call(method, path, body) {
  const init = { method, headers: { authorization } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(`${base}${path}`, init);
}

async function raiseForStatus(r, what) {
  if (!r.ok) throw new Error(`${what}: HTTP ${r.status}: ${await r.text()}`);
  return r;
}

function checkPng(bytes, width, height, what) {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...bytes.subarray(0, 8)], signature, `${what}: not a PNG`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (width !== undefined) {
    assert.equal(view.getUint32(16), width, `${what}: width`);
    assert.equal(view.getUint32(20), height, `${what}: height`);
  }
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

// Open WebUI's get_image_data() for a string without a comma: base64 of a PNG.
function imageData(data) {
  if (data.includes(',')) {
    const [header, encoded] = data.split(',', 2);
    return { mime: header.split(';')[0].replace(/^data:/, ''), bytes: Buffer.from(encoded, 'base64') };
  }
  return { mime: 'image/png', bytes: Buffer.from(data, 'base64') };
}

// 0. With credentials configured on the server, Open WebUI's empty `authorization` header must be refused (so the
//    admin's verify fails until the credentials are entered).
if (apiAuth) {
  const r = await fetch(`${base}/sdapi/v1/options`, { headers: { authorization: '' } });
  assert.equal(r.status, 401, 'GET /sdapi/v1/options without credentials');
}

// 1. The admin saves the A1111 URL: verify_url.
await raiseForStatus(await call('GET', '/sdapi/v1/options'), 'verify_url GET /sdapi/v1/options');

// 2. The model menu: get_models.
const models = (await (await raiseForStatus(await call('GET', '/sdapi/v1/sd-models'), 'sd-models')).json()).map(
  (m) => ({ id: m.title, name: m.model_name }));
assert.ok(models.length >= 1, 'sd-models: no model listed');
const model = models[0].id;
assert.equal(typeof model, 'string');

// 3. The admin picks that model: set_image_model posts the whole options object back.
{
  const options = await (await call('GET', '/sdapi/v1/options')).json();
  if (model !== options.sd_model_checkpoint) {
    options.sd_model_checkpoint = model;
    await raiseForStatus(await call('POST', '/sdapi/v1/options', options), 'set_image_model POST /sdapi/v1/options');
  }
  // Open WebUI swallows a failure here; a server refusing our own model name would be a bug, so check it.
  const again = { ...options, sd_model_checkpoint: model };
  await raiseForStatus(await call('POST', '/sdapi/v1/options', again), 'POST /sdapi/v1/options (own model)');
}

// 4. get_image_model.
const current = (await (await call('GET', '/sdapi/v1/options')).json()).sd_model_checkpoint;
assert.equal(current, model, 'options.sd_model_checkpoint is not the listed model');

// 5. A chat asks for an image: image_generations with n = 1 (Open WebUI's form default).
const [width, height] = imageSize.split('x').map((v) => parseInt(v, 10));
const n = 1;
let data = { prompt: 'a lighthouse on a cliff at dusk', batch_size: n, width, height };
if (imageSteps) data.steps = imageSteps;
data = { ...data, ...a1111Params };

let previews = 0;
let lastProgress = -1;
let maxStep = 0;
let polling = true;
const poller = (async () => {
  while (polling) {
    const p = await (await call('GET', '/sdapi/v1/progress')).json();
    assert.ok(p.progress >= 0 && p.progress <= 1, `progress out of 0..1: ${p.progress}`);
    assert.equal(typeof p.eta_relative, 'number');
    for (const key of ['job', 'job_count', 'sampling_step', 'sampling_steps', 'interrupted', 'skipped'])
      assert.ok(key in p.state, `progress.state.${key} missing`);
    if (p.state.job_count > 0 && p.state.sampling_step > 0) {
      assert.equal(p.state.sampling_steps, imageSteps, 'sampling_steps');
      assert.ok(p.progress >= lastProgress, `progress went back: ${lastProgress} -> ${p.progress}`);
      lastProgress = p.progress;
      maxStep = Math.max(maxStep, p.state.sampling_step);
      if (p.current_image) {
        checkPng(imageData(p.current_image).bytes, undefined, undefined, 'progress.current_image');
        previews++;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
})();

const t0 = Date.now();
const r = await call('POST', '/sdapi/v1/txt2img', data);
const res = await r.json();  // Open WebUI reads the JSON whatever the status
polling = false;
await poller;
assert.equal(r.status, 200, `txt2img: HTTP ${r.status}: ${JSON.stringify(res)}`);
assert.ok(Array.isArray(res.images), 'txt2img: no images array');
assert.equal(res.images.length, n, 'txt2img: image count');
for (const [i, image] of res.images.entries()) {
  const { mime, bytes } = imageData(image);
  assert.equal(mime, 'image/png');
  checkPng(bytes, width, height, `images[${i}]`);
}
assert.equal(typeof res.info, 'string', 'info must be JSON text (Open WebUI stores it as metadata)');
const info = JSON.parse(res.info);
assert.equal(info.width, width);
assert.equal(info.height, height);
assert.equal(info.steps, imageSteps);
assert.equal(info.all_seeds.length, n);
assert.equal(info.sd_model_name, model);
assert.deepEqual(res.parameters.prompt, data.prompt);
assert.ok(previews >= 1, `no step preview seen in /sdapi/v1/progress (max step seen ${maxStep})`);

console.log(`a1111_openwebui: ok: model "${model}", ${res.images.length} image ${width}x${height}, seed ${info.seed}, ` +
            `${previews} previews seen up to step ${maxStep}/${imageSteps}, ${Date.now() - t0} ms; ` +
            `warnings: ${JSON.stringify(info.warnings)}`);
