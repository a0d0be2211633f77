#include "cluster/job_codec.h"

#include <nlohmann/json.hpp>

namespace flux::cluster {
namespace {

using nlohmann::json;

const char* const kEventNames[] = {"queued", "started", "stage", "step", "completed", "failed", "cancelled"};
const char* const kStageNames[] = {"encode_text", "denoise", "decode", "encode_image"};

template <typename T>
T get(const json& j, const char* field, const std::string& what) {
  FLUX_CHECK(j.contains(field), what, ": field \"", field, "\" missing");
  try {
    return j.at(field).get<T>();
  } catch (const json::exception& e) {
    fail(what, ": field \"", field, "\": ", e.what());
  }
}

int to_int(const std::string& text, const char* field) {
  try {
    size_t used = 0;
    const int v = std::stoi(text, &used);
    FLUX_CHECK(used == text.size(), "event field ", field, ": expected an integer, got \"", text, "\"");
    return v;
  } catch (const std::logic_error&) {
    fail("event field ", field, ": expected an integer, got \"", text, "\"");
  }
}

double to_double(const std::string& text) {
  try {
    return text.empty() ? 0 : std::stod(text);
  } catch (const std::logic_error&) {
    return 0;
  }
}

}  // namespace

std::vector<std::string> event_fields(const JobEvent& e, const std::string& worker) {
  std::vector<std::string> f = {"type", kEventNames[static_cast<int>(e.kind)], "worker", worker};
  auto add = [&f](const char* name, const std::string& value) {
    f.push_back(name);
    f.push_back(value);
  };
  switch (e.kind) {
    case JobEventKind::stage:
    case JobEventKind::step:
      add("stage", kStageNames[static_cast<int>(e.stage)]);
      add("step", std::to_string(e.step));
      add("total", std::to_string(e.total));
      add("elapsed", std::to_string(e.elapsed_s));
      if (e.preview_encoded) add("preview", std::string(e.preview_encoded->begin(), e.preview_encoded->end()));
      break;
    case JobEventKind::completed: {
      const GenerateResult& r = e.result->result;
      const StageTimings& t = r.timings;
      add("result",
          json{{"seed", r.seed},
               {"steps", r.steps},
               {"steps_run", r.steps_run},
               {"width", r.image.width},
               {"height", r.image.height},
               {"prompt_truncated", r.prompt_truncated},
               {"prompt_tokens", r.prompt_tokens},
               {"timings", {t.encode_text_s, t.denoise_s, t.decode_s, t.total_s, t.clip_s, t.t5_s, t.encode_image_s}}}
              .dump());
      break;
    }
    case JobEventKind::failed:
      add("error", e.error);
      break;
    case JobEventKind::cancelled:
      add("reason", e.reason);
      break;
    default:
      break;
  }
  return f;
}

JobEvent event_from_fields(const Reply& fields, const std::string& job_id, std::string* worker) {
  JobEvent e;
  e.job_id = job_id;
  const std::string type = fields.field("type");
  int kind = -1;
  for (int i = 0; i < 7; ++i)
    if (type == kEventNames[i]) kind = i;
  FLUX_CHECK(kind >= 0, "job ", job_id, " event: unknown type \"", type, "\"");
  e.kind = static_cast<JobEventKind>(kind);
  if (worker) *worker = fields.field("worker");
  if (e.kind == JobEventKind::stage || e.kind == JobEventKind::step) {
    const std::string stage = fields.field("stage");
    for (int i = 0; i < 4; ++i)
      if (stage == kStageNames[i]) e.stage = static_cast<Stage>(i);
    e.step = to_int(fields.field("step"), "step");
    e.total = to_int(fields.field("total"), "total");
    e.elapsed_s = to_double(fields.field("elapsed"));
    if (const std::string preview = fields.field("preview"); !preview.empty())
      e.preview_encoded = std::make_shared<const std::vector<uint8_t>>(preview.begin(), preview.end());
  } else if (e.kind == JobEventKind::completed) {
    const std::string what = str_cat("job ", job_id, " completed event");
    json j;
    try {
      j = json::parse(fields.field("result"));
    } catch (const json::exception& x) {
      fail(what, ": result is not JSON: ", x.what());
    }
    auto result = std::make_shared<JobResult>();
    GenerateResult& r = result->result;
    r.seed = get<uint64_t>(j, "seed", what);
    r.steps = get<int>(j, "steps", what);
    r.steps_run = get<int>(j, "steps_run", what);
    r.image.width = get<int>(j, "width", what);
    r.image.height = get<int>(j, "height", what);
    r.prompt_truncated = get<bool>(j, "prompt_truncated", what);
    r.prompt_tokens = get<int>(j, "prompt_tokens", what);
    const auto t = get<std::vector<double>>(j, "timings", what);
    FLUX_CHECK(t.size() == 7, what, ": timings: expected 7 numbers, got ", t.size());
    r.timings = {t[0], t[1], t[2], t[3], t[4], t[5], t[6]};
    e.result = result;
  } else if (e.kind == JobEventKind::failed) {
    e.error = fields.field("error");
  } else if (e.kind == JobEventKind::cancelled) {
    e.reason = fields.field("reason");
  }
  return e;
}

bool is_terminal_fields(const Reply& fields) {
  const std::string type = fields.field("type");
  return type == "completed" || type == "failed" || type == "cancelled";
}

std::string prometheus_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void ensure_group(RedisConnection& redis) {
  const Reply r = redis.command_unchecked({"XGROUP", "CREATE", kJobsStream, kGroup, "0", "MKSTREAM"});
  if (r.is_error() && r.str.rfind("BUSYGROUP", 0) != 0) throw RedisError("XGROUP CREATE: " + r.str);
}

}  // namespace flux::cluster
