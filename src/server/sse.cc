#include "server/sse.h"

#include <nlohmann/json.hpp>

namespace flux::server {
namespace {

using nlohmann::json;

std::string size_string(int width, int height) { return str_cat(width, "x", height); }

}  // namespace

std::string sse_event(const std::string& name, const std::string& data) {
  return str_cat("event: ", name, "\ndata: ", data, "\n\n");
}

std::string base64_encode(const uint8_t* data, size_t size) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < size; i += 3) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (i < size) {
    uint32_t v = uint32_t{data[i]} << 16;
    if (i + 1 < size) v |= uint32_t{data[i + 1]} << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string job_event_json(const JobEvent& e) {
  json j = {{"type", job_event_name(e.kind)}, {"id", e.job_id}};
  switch (e.kind) {
    case JobEventKind::queued:
      j["position"] = e.position;
      break;
    case JobEventKind::stage:
      j["stage"] = stage_name(e.stage);
      j["elapsed"] = e.elapsed_s;
      break;
    case JobEventKind::step:
      j["step"] = e.step;
      j["total"] = e.total;
      j["elapsed"] = e.elapsed_s;
      if (e.preview_encoded) j["preview"] = base64_encode(*e.preview_encoded);
      break;
    case JobEventKind::completed:
      if (e.result) {
        const auto& r = e.result->result;
        j["seed"] = r.seed;
        j["steps"] = r.steps;
        j["width"] = r.image.width;
        j["height"] = r.image.height;
        j["timings"] = {{"encode_text", r.timings.encode_text_s},
                        {"denoise", r.timings.denoise_s},
                        {"decode", r.timings.decode_s},
                        {"total", r.timings.total_s}};
        j["image_url"] = str_cat("/v1/jobs/", e.job_id, "/image");
      }
      break;
    case JobEventKind::failed:
      j["error"] = e.error;
      break;
    case JobEventKind::cancelled:
      j["reason"] = e.reason.empty() ? kCancelByUser : e.reason;
      break;
    default:
      break;
  }
  return j.dump();
}

namespace {

json info_object(const JobInfo& info) {
  json j = {{"id", info.id},
            {"object", "job"},
            {"status", job_status_name(info.status)},
            {"position", info.position > 0 ? json(info.position) : json(nullptr)},
            {"prompt", info.prompt},
            {"created", info.created_unix},
            {"step", info.step},
            {"total", info.total},
            {"width", info.width},
            {"height", info.height},
            {"steps", info.steps},
            {"seed", info.seed},
            {"timings",
             {{"queued", info.queued_s},
              {"running", info.running_s},
              {"encode_text", info.timings.encode_text_s},
              {"denoise", info.timings.denoise_s},
              {"decode", info.timings.decode_s},
              {"total", info.timings.total_s}}}};
  j["error"] = info.error.empty() ? json(nullptr) : json(info.error);
  if (info.status == JobStatus::completed) j["image_url"] = str_cat("/v1/jobs/", info.id, "/image");
  if (info.status == JobStatus::completed && info.has_thumbnail)
    j["thumbnail_url"] = str_cat("/v1/jobs/", info.id, "/thumbnail");
  return j;
}

}  // namespace

std::string job_info_json(const JobInfo& info) { return info_object(info).dump(); }

std::string job_list_json(const std::vector<JobInfo>& jobs) {
  json data = json::array();
  for (const JobInfo& info : jobs) data.push_back(info_object(info));
  return json{{"object", "list"}, {"data", data}}.dump();
}

namespace {

json usage(const OpenAiReply& reply) {
  const int64_t input = reply.results.empty() ? 0 : reply.results.front()->result.prompt_tokens;
  const int64_t output = static_cast<int64_t>(reply.results.size()) * reply.width * reply.height / 256;
  return {{"input_tokens", input},
          {"output_tokens", output},
          {"total_tokens", input + output},
          {"input_tokens_details", {{"text_tokens", input}, {"image_tokens", 0}}}};
}

json seeds(const OpenAiReply& reply) {
  json out = json::array();
  for (const auto& r : reply.results) out.push_back(r->result.seed);
  return out;
}

}  // namespace

std::string openai_usage_json(const OpenAiReply& reply) { return usage(reply).dump(); }

std::string openai_images_json(const OpenAiReply& reply) {
  json data = json::array();
  for (const auto& r : reply.results)
    data.push_back({{"b64_json", base64_encode(r->encoded)}, {"seed", r->result.seed}});
  json j = {{"created", reply.created},
            {"data", data},
            {"model", reply.model},
            {"output_format", "png"},
            {"size", size_string(reply.width, reply.height)},
            {"background", "opaque"},
            {"quality", "auto"},
            {"seeds", seeds(reply)},
            {"usage", usage(reply)}};
  if (!reply.results.empty()) j["seed"] = reply.results.front()->result.seed;
  return j.dump();
}

std::string openai_partial_image_json(int64_t created, const std::vector<uint8_t>& png, int index, int width,
                                      int height) {
  return json{{"type", "image_generation.partial_image"},
              {"b64_json", base64_encode(png)},
              {"created_at", created},
              {"size", size_string(width, height)},
              {"quality", "auto"},
              {"background", "opaque"},
              {"output_format", "png"},
              {"partial_image_index", index}}
      .dump();
}

std::string openai_completed_json(const OpenAiReply& reply) {
  const JobResult& r = *reply.results.front();
  return json{{"type", "image_generation.completed"},
              {"b64_json", base64_encode(r.encoded)},
              {"created_at", reply.created},
              {"size", size_string(reply.width, reply.height)},
              {"quality", "auto"},
              {"background", "opaque"},
              {"output_format", "png"},
              {"seed", r.result.seed},
              {"model", reply.model},
              {"usage", usage(reply)}}
      .dump();
}

std::string openai_stream_error_json(const std::string& message) {
  return json{{"type", "error"}, {"error", {{"message", message}, {"type", "server_error"}}}}.dump();
}

}  // namespace flux::server
