// Server-Sent Events and the JSON bodies built from engine events: the native job events
// (queued, started, stage, step, completed, failed, cancelled) and OpenAI's image_generation.* stream events.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/job.h"

namespace flux::server {

// "event: NAME\ndata: DATA\n\n" (DATA is one line of JSON).
std::string sse_event(const std::string& name, const std::string& data);
std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::vector<uint8_t>& v) { return base64_encode(v.data(), v.size()); }

// The native event as JSON, {"type": NAME, "id", ...}: queued {position (1 = next)}; started; stage {stage,
// elapsed}; step {step (1..total), total, elapsed, preview?: base64 PNG}; completed {seed, steps, width, height,
// timings, image_url}; failed {error}; cancelled {reason: "user" | "server_stopping"}.
std::string job_event_json(const JobEvent& event);
// GET /v1/jobs/{id}: position null unless queued; prompt, created (Unix seconds), thumbnail_url when completed.
std::string job_info_json(const JobInfo& info);
// GET /v1/jobs: {"object": "list", "data": [job info, ...]} in the order given (the engine's: newest first).
std::string job_list_json(const std::vector<JobInfo>& jobs);

// What an OpenAI image reply reports besides the pictures.
struct OpenAiReply {
  int64_t created = 0;  // Unix seconds
  std::string model;    // the id that answered (GET /v1/models)
  int width = 0, height = 0;
  std::vector<std::shared_ptr<const JobResult>> results;  // one per image, in request order
};
// `usage`: input_tokens = the prompt's T5 tokens (counted by the pipeline where it encodes the prompt);
// output_tokens = image patches, width * height / 256 per image (the transformer's 16x16-pixel tokens);
// total_tokens = their sum.
std::string openai_usage_json(const OpenAiReply& reply);
// The synchronous answer: data[i] = {b64_json, seed}, plus seed (the first image's), seeds, model, usage.
std::string openai_images_json(const OpenAiReply& reply);
std::string openai_partial_image_json(int64_t created, const std::vector<uint8_t>& png, int index, int width,
                                      int height);
// The last streamed event (one image): b64_json, seed, model, usage.
std::string openai_completed_json(const OpenAiReply& reply);
std::string openai_stream_error_json(const std::string& message);

}  // namespace flux::server
