#include "server/openapi.h"

namespace flux::server {

const char* openapi_json() {
  return R"json({
"openapi": "3.0.3",
"info": {"title": "fluxcpp", "version": "1",
  "description": "FLUX.1 text-to-image server: native jobs with live progress (SSE), an OpenAI-compatible images API and the AUTOMATIC1111 /sdapi/v1 subset. With serve --api-key (or FLUX_API_KEY) every route except /, /favicon.ico, /health, /ready (and /metrics unless --metrics-auth) needs Authorization: Bearer KEY, or HTTP Basic with --api-auth user:pass."},
"components": {
  "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
  "parameters": {"id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "a job id (POST /v1/jobs)"}},
  "schemas": {
    "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
      "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string", "nullable": true},
      "code": {"type": "string", "nullable": true}}}}},
    "ImageRequest": {"type": "object", "required": ["prompt"], "properties": {
      "prompt": {"type": "string"}, "model": {"type": "string", "description": "the id of GET /v1/models, or an alias: flux, dall-e-2, dall-e-3, gpt-image-1"},
      "n": {"type": "integer", "minimum": 1}, "size": {"type": "string", "example": "1024x1024"},
      "width": {"type": "integer", "description": "/v1/jobs only (with height)"}, "height": {"type": "integer"},
      "steps": {"type": "integer", "minimum": 1}, "guidance": {"type": "number"},
      "seed": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
      "preview": {"type": "boolean", "description": "/v1/jobs: a preview PNG with each step event"},
      "stream": {"type": "boolean", "description": "/v1/images/generations: answer with SSE"},
      "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
      "response_format": {"type": "string", "enum": ["b64_json"]}, "output_format": {"type": "string", "enum": ["png"]},
      "image": {"type": "string", "description": "img2img: base64 PNG/JPEG or a data: URL"},
      "strength": {"type": "number", "minimum": 0, "maximum": 1},
      "loras": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "strength": {"type": "number"}}}}}},
    "Job": {"type": "object", "properties": {
      "id": {"type": "string"}, "object": {"type": "string", "enum": ["job"]},
      "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]},
      "position": {"type": "integer", "nullable": true, "description": "1 = next to run; null unless queued"},
      "step": {"type": "integer"}, "total": {"type": "integer"},
      "steps": {"type": "integer", "description": "the effective step count (model default applied)"},
      "width": {"type": "integer"}, "height": {"type": "integer"}, "seed": {"type": "integer"},
      "prompt": {"type": "string"}, "created": {"type": "integer", "description": "Unix seconds"},
      "timings": {"type": "object"}, "error": {"type": "string", "nullable": true},
      "image_url": {"type": "string"}, "thumbnail_url": {"type": "string"}}},
    "ImagesResponse": {"type": "object", "properties": {
      "created": {"type": "integer"}, "model": {"type": "string"}, "seed": {"type": "integer"},
      "seeds": {"type": "array", "items": {"type": "integer"}},
      "data": {"type": "array", "items": {"type": "object", "properties": {"b64_json": {"type": "string"}, "seed": {"type": "integer"}}}},
      "usage": {"type": "object", "description": "input_tokens: the prompt's T5 tokens; output_tokens: width*height/256 per image; total_tokens: their sum",
        "properties": {"input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}}},
    "A1111Generation": {"type": "object", "description": "AUTOMATIC1111's txt2img/img2img body: prompt, negative_prompt, width, height, steps, seed, cfg_scale, batch_size, n_iter, sampler_name, scheduler; img2img adds init_images and denoising_strength. Unsupported fields are ignored with a warning in info."}
  },
  "responses": {
    "Error": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "Json": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}},
    "Png": {"description": "a PNG image", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}
  }
},
"security": [{"bearer": []}, {"basic": []}, {}],
"paths": {
  "/": {"get": {"summary": "the web page", "security": [], "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
  "/favicon.ico": {"get": {"summary": "the page's icon (SVG)", "security": [], "responses": {"200": {"description": "SVG", "content": {"image/svg+xml": {}}}}}},
  "/openapi.json": {"get": {"summary": "this description", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/health": {"get": {"summary": "liveness and load progress: status loading|ready|error, load_progress 0..1, queue", "security": [], "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/ready": {"get": {"summary": "200 once the model is loaded, else 503 with Retry-After", "security": [], "responses": {"200": {"$ref": "#/components/responses/Json"}, "503": {"$ref": "#/components/responses/Json"}}}},
  "/metrics": {"get": {"summary": "Prometheus metrics (open unless --metrics-auth)", "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}}}},
  "/v1/config": {"get": {"summary": "the limits and defaults a client builds its form from (model-dependent fields null while loading)", "responses": {"200": {"description": "config", "content": {"application/json": {"schema": {"type": "object", "properties": {
    "model": {"type": "string", "nullable": true}, "variant": {"type": "string", "enum": ["schnell", "dev"], "nullable": true},
    "max_pixels": {"type": "integer"}, "max_steps": {"type": "integer"}, "default_steps": {"type": "integer", "nullable": true},
    "default_width": {"type": "integer"}, "default_height": {"type": "integer"}, "size_multiple": {"type": "integer"}, "max_seed": {"type": "integer"},
    "min_side": {"type": "integer"}, "guidance": {"type": "boolean"}, "default_guidance": {"type": "number", "nullable": true},
    "img2img": {"type": "boolean"}, "max_image_pixels": {"type": "integer"}, "loras": {"type": "boolean"},
    "max_loras": {"type": "integer"}, "max_queue": {"type": "integer"}, "auth": {"type": "boolean"}}}}}}}}},
  "/v1/models": {"get": {"summary": "the served model (OpenAI list shape)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/v1/loras": {"get": {"summary": "the LoRA adapters of --lora-dir", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/v1/images/generations": {"post": {"summary": "OpenAI-compatible generation (JSON answer, or SSE with stream: true)",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImageRequest"}}}},
    "responses": {"200": {"description": "the images", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagesResponse"}}, "text/event-stream": {}}},
      "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
  "/v1/images/edits": {"post": {"summary": "OpenAI-compatible image-to-image (multipart: image, prompt, strength, ...)",
    "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object"}}}},
    "responses": {"200": {"description": "the images", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagesResponse"}}}}, "400": {"$ref": "#/components/responses/Error"}}}},
  "/v1/jobs": {
    "get": {"summary": "the job history: queued, running and finished jobs, newest first (finished ones kept --job-ttl seconds, at most --max-jobs-kept)",
      "responses": {"200": {"description": "list", "content": {"application/json": {"schema": {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}}}},
    "post": {"summary": "submit a job; 202 with id and events_url",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImageRequest"}}}},
      "responses": {"202": {"$ref": "#/components/responses/Json"}, "400": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
  "/v1/jobs/{id}": {"parameters": [{"$ref": "#/components/parameters/id"}],
    "get": {"summary": "a job's state", "responses": {"200": {"description": "job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
    "delete": {"summary": "cancel a job (its cancelled event says reason user)", "responses": {"200": {"$ref": "#/components/responses/Json"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
  "/v1/jobs/{id}/events": {"parameters": [{"$ref": "#/components/parameters/id"}],
    "get": {"summary": "Server-Sent Events: queued {position}, started, stage {stage, elapsed}, step {step 1..total, total, elapsed, preview?}, completed, failed {error}, cancelled {reason: user|server_stopping}",
      "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}, "404": {"$ref": "#/components/responses/Error"}}}},
  "/v1/jobs/{id}/image": {"parameters": [{"$ref": "#/components/parameters/id"}],
    "get": {"summary": "the finished image", "responses": {"200": {"$ref": "#/components/responses/Png"}, "409": {"$ref": "#/components/responses/Error"}}}},
  "/v1/jobs/{id}/thumbnail": {"parameters": [{"$ref": "#/components/parameters/id"}],
    "get": {"summary": "the finished image, longest side at most 256 px", "responses": {"200": {"$ref": "#/components/responses/Png"}, "409": {"$ref": "#/components/responses/Error"}}}},
  "/sdapi/v1/txt2img": {"post": {"summary": "A1111 text-to-image: images (base64 PNG), parameters, info (JSON text with the seed)",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A1111Generation"}}}},
    "responses": {"200": {"$ref": "#/components/responses/Json"}, "400": {"$ref": "#/components/responses/Error"}}}},
  "/sdapi/v1/img2img": {"post": {"summary": "A1111 image-to-image (init_images, denoising_strength)",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A1111Generation"}}}},
    "responses": {"200": {"$ref": "#/components/responses/Json"}, "400": {"$ref": "#/components/responses/Error"}}}},
  "/sdapi/v1/progress": {"get": {"summary": "A1111 progress: progress 0..1, eta_relative, state, current_image (base64 preview)",
    "parameters": [{"name": "skip_current_image", "in": "query", "schema": {"type": "boolean"}}],
    "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/interrupt": {"post": {"summary": "A1111: cancel the running generation", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/skip": {"post": {"summary": "A1111: skip the current image of a batch", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/sd-models": {"get": {"summary": "A1111: the served model", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/options": {
    "get": {"summary": "A1111 options (sd_model_checkpoint, ...)", "responses": {"200": {"$ref": "#/components/responses/Json"}}},
    "post": {"summary": "A1111 options: the model key accepted", "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}, "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/samplers": {"get": {"summary": "A1111: the sampler (Euler)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/schedulers": {"get": {"summary": "A1111: the scheduler (simple)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/loras": {"get": {"summary": "A1111: the LoRA adapters of --lora-dir", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/sd-vae": {"get": {"summary": "A1111: VAEs to choose (none: FLUX.1 brings its own)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/upscalers": {"get": {"summary": "A1111: upscalers (none)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/latent-upscale-modes": {"get": {"summary": "A1111: latent upscale modes (none)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/prompt-styles": {"get": {"summary": "A1111: prompt styles (none)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/refresh-checkpoints": {"post": {"summary": "A1111: no-op (the list is read afresh on every request)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}},
  "/sdapi/v1/refresh-loras": {"post": {"summary": "A1111: no-op (the list is read afresh on every request)", "responses": {"200": {"$ref": "#/components/responses/Json"}}}}
}
})json";
}

}  // namespace flux::server
