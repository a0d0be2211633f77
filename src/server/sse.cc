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
    case JobEventKind::step:
      j["stage"] = stage_name(e.stage);
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
    default:
      break;
  }
  return j.dump();
}

std::string job_info_json(const JobInfo& info) {
  json j = {{"id", info.id},
            {"object", "job"},
            {"status", job_status_name(info.status)},
            {"position", info.position},
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
  return j.dump();
}

std::string openai_images_json(int64_t created, const std::vector<const std::vector<uint8_t>*>& pngs, int width,
                               int height) {
  json data = json::array();
  for (const auto* png : pngs) data.push_back({{"b64_json", base64_encode(*png)}});
  return json{{"created", created},     {"data", data},
              {"output_format", "png"}, {"size", size_string(width, height)},
              {"background", "opaque"}, {"quality", "auto"}}
      .dump();
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

std::string openai_completed_json(int64_t created, const std::vector<uint8_t>& png, int width, int height) {
  return json{{"type", "image_generation.completed"},
              {"b64_json", base64_encode(png)},
              {"created_at", created},
              {"size", size_string(width, height)},
              {"quality", "auto"},
              {"background", "opaque"},
              {"output_format", "png"},
              {"usage", {{"input_tokens", 0}, {"output_tokens", 0}, {"total_tokens", 0}}}}
      .dump();
}

std::string openai_stream_error_json(const std::string& message) {
  return json{{"type", "error"}, {"error", {{"message", message}, {"type", "server_error"}}}}.dump();
}

}  // namespace flux::server
