// The server API of issue 14 end to end (the real binary, a tiny model): queue positions from 1 and updated while
// waiting, the effective step count, SSE stage/step events, the OpenAI reply's seed / model / usage, GET /v1/config,
// the job history and thumbnails, /favicon.ico, and GET /openapi.json against the router's table.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "server/routes.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

// PNG IHDR width and height (0, 0 when not a PNG).
std::pair<int, int> png_size(const std::string& data) {
  if (data.size() < 24 || data.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    return static_cast<int>((static_cast<uint32_t>(static_cast<uint8_t>(data[at])) << 24) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(data[at + 1])) << 16) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(data[at + 2])) << 8) |
                            static_cast<uint8_t>(data[at + 3]));
  };
  return {be32(16), be32(20)};
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess({"--model", tiny_model_dir(), "--queue-size", "3", "--max-pixels", "262144",
                                 "--max-steps", "1000", "--threads", "2", "--max-jobs-kept", "4"});
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_TRUE(server_->wait_status("ready")) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);
    delete server_;
    server_ = nullptr;
  }
  void TearDown() override {
    EXPECT_TRUE(poll_until([] {
      const json h = parse(get("/health").body);
      return h.is_object() && h["queue_depth"] == 0 && h["running"] == false;
    })) << server_->log();
  }
  static HttpResponse get(const std::string& path) { return http_request(server_->port(), "GET", path); }
  static HttpResponse post(const std::string& path, const std::string& body) {
    return http_request(server_->port(), "POST", path, body);
  }
  static HttpResponse del(const std::string& path) { return http_request(server_->port(), "DELETE", path); }
  static std::string submit(const std::string& body) {
    const HttpResponse r = post("/v1/jobs", body);
    EXPECT_EQ(r.status, 202) << r.body;
    return parse(r.body).value("id", "");
  }
  static std::string long_job() { return submit(R"({"prompt": "long", "size": "64x64", "steps": 1000})"); }
  static bool running() { return parse(get("/health").body).value("running", false); }
  static ServerProcess* server_;
};
ServerProcess* ApiTest::server_ = nullptr;

// Issue 14: positions counted from 0 and never updated; a running job at position 0; "steps": 0 while waiting.
TEST_F(ApiTest, QueuePositionsCountFromOneAndFollowTheQueue) {
  const std::string blocker = long_job();
  ASSERT_TRUE(poll_until(running));
  const std::string a = submit(R"({"prompt": "a", "size": "64x64"})");  // the model's default steps
  const std::string b = submit(R"({"prompt": "b", "size": "64x64", "steps": 2})");
  const json running_info = parse(get("/v1/jobs/" + blocker).body);
  EXPECT_EQ(running_info["status"], "running");
  EXPECT_TRUE(running_info["position"].is_null());
  EXPECT_EQ(running_info["steps"], 1000);
  const json info_a = parse(get("/v1/jobs/" + a).body);
  EXPECT_EQ(info_a["position"], 1);
  EXPECT_EQ(info_a["steps"], 4);  // schnell's default, not 0
  EXPECT_EQ(info_a["prompt"], "a");
  EXPECT_GT(info_a["created"].get<int64_t>(), 1700000000);
  EXPECT_EQ(parse(get("/v1/jobs/" + b).body)["position"], 2);

  SseStream events(server_->port(), "GET", "/v1/jobs/" + b + "/events");
  auto first = events.next(30s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->name, "queued");
  EXPECT_EQ(parse(first->data)["position"], 2);
  EXPECT_EQ(del("/v1/jobs/" + a).status, 200);  // b moves up: the stream says so, and so does GET
  auto second = events.next(30s);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->name, "queued");
  EXPECT_EQ(parse(second->data)["position"], 1);
  EXPECT_EQ(parse(get("/v1/jobs/" + b).body)["position"], 1);
  EXPECT_EQ(del("/v1/jobs/" + blocker).status, 200);
  auto third = events.next(30s);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->name, "started");
  while (events.next(60s)) {
  }
}

// `step` events are the denoising steps only, exactly `total` of them numbered 1..total; stages are `stage` events.
TEST_F(ApiTest, StepEventsAreTheDenoisingStepsOnly) {
  const std::string blocker = long_job();
  ASSERT_TRUE(poll_until(running));
  const std::string id = submit(R"({"prompt": "a cat", "size": "64x64", "steps": 4, "preview": true})");
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  ASSERT_EQ(events.status(), 200);
  EXPECT_EQ(del("/v1/jobs/" + blocker).status, 200);
  std::vector<int> steps;
  std::vector<std::string> stages, names;
  while (auto e = events.next(60s)) {
    names.push_back(e->name);
    const json d = parse(e->data);
    EXPECT_EQ(d["type"], e->name);
    if (e->name == "step") {
      steps.push_back(d["step"]);
      EXPECT_EQ(d["total"], 4);
      EXPECT_FALSE(d.contains("stage"));
      EXPECT_TRUE(d.contains("preview"));
    }
    if (e->name == "stage") {
      stages.push_back(d["stage"]);
      EXPECT_TRUE(d["elapsed"].is_number());
    }
  }
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(stages, (std::vector<std::string>{"encode_text", "denoise", "decode"}));
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), "completed");
}

TEST_F(ApiTest, CancelByTheUserSaysSo) {
  const std::string id = long_job();
  SseStream events(server_->port(), "GET", "/v1/jobs/" + id + "/events");
  std::optional<SseEvent> e;
  while ((e = events.next(30s)) && e->name != "step") {
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(del("/v1/jobs/" + id).status, 200);
  json last;
  while ((e = events.next(30s))) last = parse(e->data);
  EXPECT_EQ(last["type"], "cancelled");
  EXPECT_EQ(last["reason"], "user");
}

TEST_F(ApiTest, OpenAiReplyCarriesSeedsModelAndUsage) {
  const HttpResponse r = post("/v1/images/generations",
                              R"({"prompt": "a cat on a mat", "n": 2, "size": "64x128", "steps": 1, "seed": 40})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = parse(r.body);
  EXPECT_EQ(j["model"], "flux.1-schnell");
  EXPECT_EQ(j["seed"], 40);
  EXPECT_EQ(j["seeds"], json::array({40, 41}));
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][0]["seed"], 40);
  EXPECT_EQ(j["data"][1]["seed"], 41);
  const int input = j["usage"]["input_tokens"];
  EXPECT_GT(input, 1);  // the prompt's T5 tokens and the end token
  EXPECT_EQ(j["usage"]["output_tokens"], 2 * 64 * 128 / 256);
  EXPECT_EQ(j["usage"]["total_tokens"], input + 2 * 64 * 128 / 256);
  // A longer prompt has more tokens.
  const json longer = parse(post("/v1/images/generations",
                                 R"({"prompt": "a cat on a mat, a dog on a log, a frog on a bog", "size": "64x64",
                                     "steps": 1})")
                                .body);
  EXPECT_GT(longer["usage"]["input_tokens"].get<int>(), input);

  // The documented aliases are accepted; another model is refused by name, listing what is accepted.
  for (const char* alias : {"flux", "flux.1-schnell", "dall-e-2", "dall-e-3", "gpt-image-1"}) {
    const HttpResponse ok = post("/v1/images/generations",
                                 str_cat(R"({"prompt": "x", "size": "64x64", "steps": 1, "model": ")", alias, "\"}"));
    EXPECT_EQ(ok.status, 200) << alias << ": " << ok.body;
  }
  const HttpResponse bad =
      post("/v1/images/generations", R"({"prompt": "x", "size": "64x64", "steps": 1, "model": "sdxl"})");
  EXPECT_EQ(bad.status, 400);
  const json error = parse(bad.body)["error"];
  EXPECT_EQ(error["param"], "model");
  EXPECT_NE(error["message"].get<std::string>().find("\"flux.1-schnell\""), std::string::npos) << bad.body;
  EXPECT_NE(error["message"].get<std::string>().find("gpt-image-1"), std::string::npos) << bad.body;

  // Streamed: the completed event carries them too.
  SseStream s(server_->port(), "POST", "/v1/images/generations",
              R"({"prompt": "a cat", "size": "64x64", "steps": 1, "stream": true, "seed": 9})");
  json completed;
  while (auto e = s.next(60s))
    if (e->name == "image_generation.completed") completed = parse(e->data);
  EXPECT_EQ(completed["seed"], 9);
  EXPECT_EQ(completed["model"], "flux.1-schnell");
  EXPECT_GT(completed["usage"]["input_tokens"].get<int>(), 1);
  EXPECT_EQ(completed["usage"]["output_tokens"], 16);
}

TEST_F(ApiTest, ConfigDescribesTheLimitsAndTheModel) {
  const HttpResponse r = get("/v1/config");
  ASSERT_EQ(r.status, 200);
  const json c = parse(r.body);
  EXPECT_EQ(c["model"], "flux.1-schnell");
  EXPECT_EQ(c["variant"], "schnell");
  EXPECT_EQ(c["max_pixels"], 262144);
  EXPECT_EQ(c["max_steps"], 1000);
  EXPECT_EQ(c["default_steps"], 4);
  EXPECT_EQ(c["default_width"], 512);  // the largest square within --max-pixels
  EXPECT_EQ(c["default_height"], 512);
  EXPECT_EQ(c["size_multiple"], 16);
  EXPECT_EQ(c["min_side"], 64);
  EXPECT_EQ(c["guidance"], false);
  EXPECT_TRUE(c["default_guidance"].is_null());
  EXPECT_EQ(c["img2img"], true);
  EXPECT_TRUE(c["max_image_pixels"].is_number_integer());
  EXPECT_EQ(c["loras"], false);
  EXPECT_EQ(c["max_loras"], 0);
  EXPECT_EQ(c["max_queue"], 3);
  EXPECT_EQ(c["auth"], false);
}

TEST_F(ApiTest, JobHistoryIsNewestFirstBoundedAndHasThumbnails) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(submit(str_cat(R"({"prompt": "history )", i, R"(", "width": 512, "height": 256, "steps": 1})")));
    ASSERT_TRUE(poll_until([&] { return parse(get("/v1/jobs/" + ids.back()).body)["status"] == "completed"; }, 120s));
  }
  const json list = parse(get("/v1/jobs").body);
  EXPECT_EQ(list["object"], "list");
  std::vector<std::string> listed;
  for (const auto& job : list["data"]) listed.push_back(job["id"]);
  ASSERT_LE(listed.size(), 4u);  // --max-jobs-kept 4
  ASSERT_GE(listed.size(), 4u);
  EXPECT_EQ(listed[0], ids[4]);  // newest first
  EXPECT_EQ(listed[1], ids[3]);
  EXPECT_EQ(std::find(listed.begin(), listed.end(), ids[0]), listed.end());  // the oldest was dropped
  EXPECT_EQ(get("/v1/jobs/" + ids[0]).status, 404);
  const json newest = list["data"][0];
  EXPECT_EQ(newest["prompt"], "history 4");
  EXPECT_EQ(newest["status"], "completed");
  ASSERT_TRUE(newest["thumbnail_url"].is_string());
  const HttpResponse thumb = get(newest["thumbnail_url"]);
  EXPECT_EQ(thumb.status, 200);
  EXPECT_EQ(thumb.header("content-type"), "image/png");
  EXPECT_EQ(png_size(thumb.body), (std::pair<int, int>{256, 128}));  // 512x256 scaled to a 256 px long side
  EXPECT_EQ(png_size(get("/v1/jobs/" + ids[4] + "/image").body), (std::pair<int, int>{512, 256}));

  const std::string queued_blocker = long_job();
  EXPECT_EQ(get("/v1/jobs/" + queued_blocker + "/thumbnail").status, 409);
  EXPECT_EQ(parse(get("/v1/jobs").body)["data"][0]["id"], queued_blocker);  // running jobs are listed too
  EXPECT_EQ(del("/v1/jobs/" + queued_blocker).status, 200);
}

TEST_F(ApiTest, FaviconIsServed) {
  const HttpResponse r = get("/favicon.ico");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "image/svg+xml");
  EXPECT_NE(r.body.find("<svg"), std::string::npos);
}

// Every route of the router's table is described in /openapi.json, and every described path is answered by
// something other than a 404.
TEST_F(ApiTest, OpenApiDescribesEveryRoute) {
  const HttpResponse r = get("/openapi.json");
  ASSERT_EQ(r.status, 200);
  const json doc = parse(r.body);
  ASSERT_TRUE(doc.is_object()) << r.body.substr(0, 200);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  const json& paths = doc["paths"];
  std::string lower;
  for (const server::RouteSpec& route : server::route_table()) {
    lower = route.method;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    ASSERT_TRUE(paths.contains(route.path)) << route.path << " is not in /openapi.json";
    EXPECT_TRUE(paths[route.path].contains(lower)) << route.method << " " << route.path << " is not in /openapi.json";
  }
  const std::string job = submit(R"({"prompt": "openapi", "size": "64x64", "steps": 1})");
  ASSERT_TRUE(poll_until([&] { return parse(get("/v1/jobs/" + job).body)["status"] == "completed"; }, 60s));
  for (const auto& [path, item] : paths.items()) {
    std::string concrete = path;
    const size_t at = concrete.find("{id}");
    if (at != std::string::npos) concrete.replace(at, 4, job);
    bool described_by_table = false;
    for (const server::RouteSpec& route : server::route_table()) described_by_table |= route.path == path;
    EXPECT_TRUE(described_by_table) << path << " is documented but not in the router's table";
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      std::string upper = method;
      std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) { return std::toupper(ch); });
      // Bodies that cannot start work: a 4xx from validation is fine, only "no such route" is not.
      const std::string body = upper == "POST" ? "{}" : "";
      if (upper == "DELETE" || path == "/v1/jobs/{id}/events") continue;  // checked by the other tests
      const HttpResponse answer = http_request(server_->port(), upper, concrete, body, 30s);
      EXPECT_NE(answer.status, 404) << upper << " " << concrete << ": " << answer.body.substr(0, 200);
      EXPECT_NE(answer.status, 0) << upper << " " << concrete;
    }
  }
}

TEST(RouteTable, PathTemplatesMatchWholeSegments) {
  EXPECT_TRUE(server::path_matches("/v1/jobs/{id}", "/v1/jobs/job_1_ab"));
  EXPECT_TRUE(server::path_matches("/v1/jobs/{id}/image", "/v1/jobs/x/image"));
  EXPECT_FALSE(server::path_matches("/v1/jobs/{id}", "/v1/jobs/"));
  EXPECT_FALSE(server::path_matches("/v1/jobs/{id}", "/v1/jobs/a/b"));
  EXPECT_FALSE(server::path_matches("/v1/jobs/{id}/image", "/v1/jobs//image"));
  EXPECT_FALSE(server::path_matches("/v1/jobs", "/v1/jobsx"));
  EXPECT_TRUE(server::path_matches("/health", "/health"));
}

}  // namespace
}  // namespace flux::test
