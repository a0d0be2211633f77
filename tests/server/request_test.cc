// Request parsing and validation without sockets: typed ImageRequest from JSON, every refusal a 400 naming
// the field; plus SSE/base64 formatting and route templates.
#include "server/request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/errors.h"
#include "server/metrics.h"
#include "server/sse.h"

namespace flux::server {
namespace {

Limits limits() {
  Limits l;
  l.max_pixels = 512 * 512;
  l.max_steps = 50;
  l.max_n = 4;
  l.default_width = l.default_height = 512;
  return l;
}

// The HttpError thrown for `body`, or a failure when it parses.
HttpError refusal(const std::string& body, Endpoint endpoint = Endpoint::openai) {
  try {
    parse_image_request(body, endpoint, limits());
  } catch (const HttpError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return HttpError(0, "");
}

TEST(Request, OpenAiFieldsAndExtensions) {
  const ImageRequest r = parse_image_request(
      R"({"prompt": "a cat", "n": 2, "size": "256x128", "response_format": "b64_json", "output_format": "png",
          "seed": 42, "steps": 3, "guidance": 2.5, "model": "flux", "quality": "auto"})",
      Endpoint::openai, limits());
  EXPECT_EQ(r.generate.prompt, "a cat");
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.generate.width, 256);
  EXPECT_EQ(r.generate.height, 128);
  EXPECT_EQ(r.generate.seed, 42u);
  EXPECT_EQ(r.generate.steps, 3);
  EXPECT_FLOAT_EQ(r.generate.guidance, 2.5f);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.generate.preview);
}

TEST(Request, DefaultsAndStreaming) {
  const ImageRequest r =
      parse_image_request(R"({"prompt": "x", "stream": true, "partial_images": 2})", Endpoint::openai, limits());
  EXPECT_EQ(r.generate.width, 512);
  EXPECT_EQ(r.generate.height, 512);
  EXPECT_EQ(r.generate.steps, 0);
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.partial_images, 2);
  EXPECT_TRUE(r.generate.preview);  // partial images need previews
}

TEST(Request, NativeJobWidthHeightAndPreview) {
  const ImageRequest r =
      parse_image_request(R"({"prompt": "x", "width": 128, "height": 64, "preview": true})", Endpoint::jobs, limits());
  EXPECT_EQ(r.generate.width, 128);
  EXPECT_EQ(r.generate.height, 64);
  EXPECT_TRUE(r.generate.preview);
  EXPECT_EQ(refusal(R"({"prompt": "x", "width": 128})", Endpoint::jobs).param, "height");
  EXPECT_EQ(refusal(R"({"prompt": "x", "size": "64x64", "width": 64, "height": 64})", Endpoint::jobs).param, "size");
  EXPECT_EQ(refusal(R"({"prompt": "x", "stream": true})", Endpoint::jobs).param, "stream");
  EXPECT_EQ(refusal(R"({"prompt": "x", "n": 2})", Endpoint::jobs).param, "n");
  EXPECT_EQ(refusal(R"({"prompt": "x", "width": 64})", Endpoint::openai).param, "width");
}

TEST(Request, EveryRefusalNamesTheField) {
  struct Case {
    const char* body;
    const char* param;
    const char* words;  // expected in the message
  };
  const Case cases[] = {
      {R"({"prompt": 5})", "prompt", "expected a string"},
      {R"({"size": "64x64"})", "prompt", "required"},
      {R"({"prompt": "   "})", "prompt", "non-empty"},
      {R"({"prompt": "x", "colour": "red"})", "colour", "unknown field"},
      {R"({"prompt": "x", "size": "100x100"})", "size", "multiples of 16"},
      {R"({"prompt": "x", "size": "1024x1024"})", "size", "above the limit"},
      {R"({"prompt": "x", "size": "big"})", "size", "WIDTHxHEIGHT"},
      {R"({"prompt": "x", "size": "32x32"})", "size", "at least 64x64"},
      {R"({"prompt": "x", "size": 512})", "size", "expected a string"},
      {R"({"prompt": "x", "steps": 0})", "steps", "1..50"},
      {R"({"prompt": "x", "steps": 51})", "steps", "1..50"},
      {R"({"prompt": "x", "steps": 2.5})", "steps", "expected an integer"},
      {R"({"prompt": "x", "steps": "4"})", "steps", "expected an integer"},
      {R"({"prompt": "x", "n": 0})", "n", "1..4"},
      {R"({"prompt": "x", "n": 5})", "n", "1..4"},
      {R"({"prompt": "x", "n": true})", "n", "expected an integer"},
      // The seed's range is named whatever JSON type the number parsed as (issue 14: "got a number" above 2^64).
      {R"({"prompt": "x", "seed": -1})", "seed", "from 0 to 9007199254740991 (2^53 - 1), got -1"},
      {R"({"prompt": "x", "seed": 9007199254740992})", "seed", "from 0 to 9007199254740991"},
      {R"({"prompt": "x", "seed": 18446744073709551615})", "seed", "from 0 to 9007199254740991"},
      {R"({"prompt": "x", "seed": 18446744073709551616})", "seed", "from 0 to 9007199254740991 (2^53 - 1), got 1.8"},
      {R"({"prompt": "x", "seed": 1.5})", "seed", "from 0 to 9007199254740991 (2^53 - 1), got 1.5"},
      {R"({"prompt": "x", "seed": "7"})", "seed", "from 0 to 9007199254740991 (2^53 - 1), got a string"},
      {R"({"prompt": "x", "guidance": "high"})", "guidance", "expected a number"},
      {R"({"prompt": "x", "guidance": 1000})", "guidance", "0..100"},
      {R"({"prompt": "x", "response_format": "url"})", "response_format", "not supported"},
      {R"({"prompt": "x", "response_format": "jpeg"})", "response_format", "b64_json"},
      {R"({"prompt": "x", "output_format": "webp"})", "output_format", "png"},
      {R"({"prompt": "x", "stream": "yes"})", "stream", "true or false"},
      {R"({"prompt": "x", "partial_images": 2})", "partial_images", "stream"},
      {R"({"prompt": "x", "stream": true, "partial_images": 4})", "partial_images", "0..3"},
      {R"({"prompt": "x", "stream": true, "n": 2})", "n", "one image"},
  };
  for (const Case& c : cases) {
    const HttpError e = refusal(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_NE(std::string(e.what()).find(c.words), std::string::npos) << c.body << " -> " << e.what();
  }
}

TEST(Request, MalformedJsonAndNonObjects) {
  EXPECT_NE(std::string(refusal("{\"prompt\": ").what()).find("malformed JSON"), std::string::npos);
  EXPECT_NE(std::string(refusal("").what()).find("malformed JSON"), std::string::npos);
  EXPECT_NE(std::string(refusal(R"({"prompt": "x", "steps": 7e777})").what()).find("malformed JSON"),
            std::string::npos);  // number overflow (found by fuzz_request)
  EXPECT_NE(std::string(refusal("[1, 2]").what()).find("expected a JSON object"), std::string::npos);
  EXPECT_NE(std::string(refusal("\"prompt\"").what()).find("expected a JSON object"), std::string::npos);
}

TEST(Request, RandomSeedWhenAbsent) {
  const auto a = parse_image_request(R"({"prompt": "x"})", Endpoint::openai, limits());
  const auto b = parse_image_request(R"({"prompt": "x"})", Endpoint::openai, limits());
  EXPECT_NE(a.generate.seed, b.generate.seed);
  EXPECT_LT(a.generate.seed, uint64_t{1} << 53);
}

TEST(Errors, OpenAiShape) {
  const auto j = nlohmann::json::parse(error_json(400, "size: bad", "size", "invalid_value"));
  EXPECT_EQ(j["error"]["message"], "size: bad");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "size");
  EXPECT_EQ(j["error"]["code"], "invalid_value");
  const auto k = nlohmann::json::parse(error_json(503, "loading"));
  EXPECT_EQ(k["error"]["type"], "server_error");
  EXPECT_TRUE(k["error"]["param"].is_null());
}

TEST(Sse, EventFormatAndBase64) {
  EXPECT_EQ(sse_event("step", "{\"a\":1}"), "event: step\ndata: {\"a\":1}\n\n");
  const std::vector<uint8_t> bytes = {'M', 'a', 'n', 'y', 0xff};
  EXPECT_EQ(base64_encode(bytes.data(), 0), "");
  EXPECT_EQ(base64_encode(bytes.data(), 1), "TQ==");
  EXPECT_EQ(base64_encode(bytes.data(), 2), "TWE=");
  EXPECT_EQ(base64_encode(bytes.data(), 3), "TWFu");
  EXPECT_EQ(base64_encode(bytes), "TWFuef8=");
  JobEvent e;
  e.kind = JobEventKind::step;
  e.job_id = "j";
  e.stage = Stage::denoise;
  e.step = 2;
  e.total = 4;
  e.preview_encoded = std::make_shared<const std::vector<uint8_t>>(bytes);
  const auto j = nlohmann::json::parse(job_event_json(e));
  EXPECT_EQ(j["type"], "step");
  EXPECT_EQ(j["step"], 2);
  EXPECT_EQ(j["total"], 4);
  EXPECT_FALSE(j.contains("stage"));  // stage changes are their own events
  EXPECT_EQ(j["preview"], "TWFuef8=");
  JobEvent stage;
  stage.kind = JobEventKind::stage;
  stage.job_id = "j";
  stage.stage = Stage::decode;
  stage.elapsed_s = 1.5;
  const auto s = nlohmann::json::parse(job_event_json(stage));
  EXPECT_EQ(s, (nlohmann::json{{"type", "stage"}, {"id", "j"}, {"stage", "decode"}, {"elapsed", 1.5}}));
  JobEvent cancelled;
  cancelled.kind = JobEventKind::cancelled;
  cancelled.job_id = "j";
  cancelled.reason = kCancelServerStopping;
  EXPECT_EQ(nlohmann::json::parse(job_event_json(cancelled))["reason"], "server_stopping");
  JobEvent queued;
  queued.kind = JobEventKind::queued;
  queued.position = 3;
  EXPECT_EQ(nlohmann::json::parse(job_event_json(queued))["position"], 3);
}

TEST(Metrics, RouteTemplatesAndText) {
  EXPECT_EQ(route_template("/v1/jobs/job_1_abc"), "/v1/jobs/{id}");
  EXPECT_EQ(route_template("/v1/jobs/job_1_abc/events"), "/v1/jobs/{id}/events");
  EXPECT_EQ(route_template("/health"), "/health");
  EXPECT_EQ(route_template("/etc/passwd"), "other");
  EXPECT_EQ(route_template("/v1/jobs/job_1_abc/thumbnail"), "/v1/jobs/{id}/thumbnail");
  EXPECT_EQ(route_template("/v1/config"), "/v1/config");
  EXPECT_EQ(route_template("/sdapi/v1/txt2img"), "/sdapi/v1/txt2img");
  Metrics m;
  m.count_request("GET", "/health", 200, 0.0005);
  m.count_request("GET", "/health", 200, 0.002);
  EngineStats stats;
  stats.queue_depth = 3;
  LoadStatus load;
  const std::string text = m.render(stats, load);
  EXPECT_NE(text.find("flux_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("flux_http_request_duration_seconds_bucket{le=\"0.001\"} 1"), std::string::npos);
  EXPECT_NE(text.find("flux_queue_depth 3"), std::string::npos);
  EXPECT_NE(text.find("flux_model_load_state{state=\"loading\"} 1"), std::string::npos);
}

}  // namespace
}  // namespace flux::server
