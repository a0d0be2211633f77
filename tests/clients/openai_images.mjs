// The official `openai` npm client (package.json pins it) against `fluxcpp serve`'s /v1/images/generations:
// a plain request for two images, then `stream: true` with partial images before the completed one. Checks that
// every image is a PNG of the asked size.
//
//   node openai_images.mjs BASE_URL          (env FLUX_API_KEY: sent as the bearer key when the server wants one)
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = (process.argv[2] || process.env.FLUX_URL || '').replace(/\/$/, '');
if (!base) {
  console.error('usage: node openai_images.mjs BASE_URL');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.FLUX_API_KEY || 'no-key', maxRetries: 0 });

function checkPng(b64, width, height, what) {
  const bytes = Buffer.from(b64, 'base64');
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${what}: not a PNG`);
  assert.equal(bytes.readUInt32BE(16), width, `${what}: width`);
  assert.equal(bytes.readUInt32BE(20), height, `${what}: height`);
}

const models = await client.models.list();
const model = models.data[0]?.id;
assert.equal(typeof model, 'string', 'GET /v1/models lists no model');

// Plain: n = 2, base64 answers. `steps` and `seed` are the server's documented extensions (sent as extra body fields).
const plain = await client.images.generate({
  model, prompt: 'a red bicycle', n: 2, size: '256x256', response_format: 'b64_json', steps: 2, seed: 11,
});
assert.equal(plain.data.length, 2, 'plain: image count');
plain.data.forEach((d, i) => checkPng(d.b64_json, 256, 256, `plain data[${i}]`));
assert.notEqual(plain.data[0].b64_json, plain.data[1].b64_json, 'plain: the two images are identical');

// Streamed: partial images, then the completed one last.
const stream = await client.images.generate({
  model, prompt: 'a red bicycle', size: '256x256', stream: true, partial_images: 2, steps: 6,
});
const kinds = [];
let completed = null;
for await (const event of stream) {
  kinds.push(event.type);
  if (event.type === 'image_generation.partial_image') {
    checkPng(event.b64_json, 256, 256, `partial ${event.partial_image_index}`);
  } else if (event.type === 'image_generation.completed') {
    completed = event;
  }
}
const partials = kinds.filter((k) => k === 'image_generation.partial_image').length;
assert.ok(partials >= 1 && partials <= 2, `stream: expected 1..2 partial images, got ${partials} (${kinds})`);
assert.ok(completed, `stream: no image_generation.completed event (${kinds})`);
assert.equal(kinds[kinds.length - 1], 'image_generation.completed', 'stream: completed is not the last event');
checkPng(completed.b64_json, 256, 256, 'completed');

console.log(`openai_images: ok: model "${model}", 2 plain images; stream: ${partials} partial + completed`);
