// `fluxcpp serve --memory-budget`: /health shows the budget, the plan and what is resident (before and after a
// job), a size that cannot fit the budget is refused at submit with 400 naming need and budget, a bad budget
// value stops the server with a message naming it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;

json get_json(int port, const std::string& path) { return json::parse(http_request(port, "GET", path).body); }

TEST(ServerMemory, HealthShowsThePlanAndRefusesSizesOverTheBudget) {
  // The peaks of the tiny model's plans at 256x256, from the same code the server runs.
  ModelPaths paths;
  paths.model_dir = tiny_model_dir();
  LoadOptions load;
  load.memory_budget = uint64_t{1} << 40;
  GenerateRequest r;
  r.prompt = "a red cube";
  r.width = r.height = 256;
  const StagePlan peaks = Pipeline::load(paths, load)->memory_plan(r);
  ASSERT_GT(peaks.peaks[0], peaks.peaks[1]);
  const uint64_t budget = peaks.peaks[1];  // fits drop_text_encoders at 256x256, not all_resident

  ServerProcess server({"--model", tiny_model_dir(), "--max-pixels", "1048576", "--threads", "2",
                        "--memory-budget", std::to_string(budget)});
  ASSERT_GT(server.port(), 0) << server.log();
  ASSERT_TRUE(server.wait_status("ready")) << server.log();
  const int port = server.port();

  // After load: the plan for the default size (1024x1024 does not fit: every drop), the transformer dropped.
  json health = get_json(port, "/health");
  ASSERT_TRUE(health.contains("memory")) << health.dump();
  EXPECT_EQ(health["memory"]["budget"], budget);
  EXPECT_EQ(health["memory"]["plan"], "drop_transformer");
  EXPECT_EQ(health["memory"]["resident"], json({"clip", "t5", "vae"}));
  EXPECT_EQ(health["memory"]["weights"], "prepacked");

  // 1024x1024 cannot fit even with every drop: 400 at submit, naming the size, the need and the budget.
  const HttpResponse refused =
      http_request(port, "POST", "/v1/jobs", R"({"prompt": "a red cube", "width": 1024, "height": 1024})");
  EXPECT_EQ(refused.status, 400) << refused.body;
  const json error = json::parse(refused.body)["error"];
  EXPECT_EQ(error["code"], "memory_budget_exceeded");
  EXPECT_EQ(error["param"], "size");
  const std::string message = error["message"];
  EXPECT_NE(message.find("1024x1024"), std::string::npos) << message;
  EXPECT_NE(message.find("decode stage needs"), std::string::npos) << message;
  EXPECT_NE(message.find(str_cat("the budget is ", mib(budget), " (", budget, " bytes)")), std::string::npos)
      << message;

  // 256x256 fits by dropping the text encoders after encoding.
  const HttpResponse accepted =
      http_request(port, "POST", "/v1/jobs", R"({"prompt": "a red cube", "width": 256, "height": 256, "steps": 1})");
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = json::parse(accepted.body)["id"];
  ASSERT_TRUE(
      poll_until([&] { return get_json(port, "/v1/jobs/" + id)["status"] == "completed"; }, std::chrono::seconds(120)))
      << server.log();
  health = get_json(port, "/health");
  EXPECT_EQ(health["memory"]["plan"], "drop_text_encoders") << health.dump();
  EXPECT_EQ(health["memory"]["resident"], json({"transformer", "vae"})) << health.dump();
  EXPECT_EQ(health["memory"]["need"], budget);
  EXPECT_NE(server.log().find("memory: plan drop_text_encoders for a job of 256x256"), std::string::npos)
      << server.log();
  EXPECT_EQ(server.terminate(), 0);
}

TEST(ServerMemory, BadBudgetIsNamed) {
  ServerProcess server({"--model", tiny_model_dir(), "--memory-budget", "12Q"});
  EXPECT_EQ(server.wait_exit(), 1);
  EXPECT_NE(server.log().find("--memory-budget"), std::string::npos) << server.log();
  EXPECT_NE(server.log().find("'12Q'"), std::string::npos) << server.log();
}

}  // namespace
}  // namespace flux::test
