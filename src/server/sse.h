// Server-Sent Events and the JSON bodies built from engine events: the native job events
// (queued, started, step, completed, failed, cancelled) and OpenAI's image_generation.* stream events.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/job.h"

namespace flux::server {

// "event: NAME\ndata: DATA\n\n" (DATA is one line of JSON).
std::string sse_event(const std::string& name, const std::string& data);
std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::vector<uint8_t>& v) { return base64_encode(v.data(), v.size()); }

// The native event as JSON: {"type": "step", "id", "step", "total", "elapsed", "stage", "preview"?: base64 PNG}.
std::string job_event_json(const JobEvent& event);
// GET /v1/jobs/{id}
std::string job_info_json(const JobInfo& info);

// OpenAI image generation responses. `created` is Unix seconds.
std::string openai_images_json(int64_t created, const std::vector<const std::vector<uint8_t>*>& pngs, int width,
                               int height);
std::string openai_partial_image_json(int64_t created, const std::vector<uint8_t>& png, int index, int width,
                                      int height);
std::string openai_completed_json(int64_t created, const std::vector<uint8_t>& png, int width, int height);
std::string openai_stream_error_json(const std::string& message);

}  // namespace flux::server
