// `fluxcpp serve --model ORG/NAME --allow-download` against the mock hub (tests/hub/mock): the download runs on
// the engine's loader thread, /health reports `downloading` with the file, bytes and rate while /ready stays 503,
// then the model loads; SIGTERM during the download exits promptly and leaves a resumable .incomplete.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "hub/hf_cache.h"
#include "mock_hub.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kHubCommit = "89abcdef0123456789abcdef0123456789abcdef";

class ServerHub : public ::testing::Test {
 protected:
  ServerHub()
      : cache_(temp_dir("server-hub-cache")),
        env_cache_("HF_HUB_CACHE", cache_),
        env_endpoint_("HF_ENDPOINT", hub_.endpoint()),
        env_offline_("HF_HUB_OFFLINE", "0") {
    hub_.add_repo("test-org/FLUX.1-tiny", kHubCommit, tiny_model_dir());
  }
  json health(int port) { return json::parse(http_request(port, "GET", "/health", "", 5s).body, nullptr, false); }
  uint64_t partial_bytes() const {
    uint64_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(hub::repo_cache_dir(cache_, "test-org/FLUX.1-tiny") + "/blobs", ec))
      if (e.path().extension() == ".incomplete") n += e.file_size();
    return n;
  }
  MockHub hub_;
  std::string cache_;
  ScopedEnv env_cache_, env_endpoint_, env_offline_;
};

TEST_F(ServerHub, HealthReportsTheDownloadThenLoadingThenReady) {
  hub_.set_rate(512 * 1024);  // slow enough to watch
  ServerProcess server({"--model", "test-org/FLUX.1-tiny", "--allow-download"});
  json seen;
  ASSERT_TRUE(poll_until(
      [&] {
        seen = health(server.port());
        return seen.is_object() && seen.value("status", "") == "downloading" && seen.contains("download") &&
               seen["download"].value("bytes_done", 0) > 0;
      },
      60s))
      << seen.dump() << server.log();
  const json& d = seen["download"];
  EXPECT_FALSE(d.value("file", "").empty());
  EXPECT_GE(d.value("bytes_total", 0), d.value("bytes_done", 0));
  EXPECT_GT(d.value("bytes_per_s", 0.0), 0.0);
  EXPECT_GT(d.value("n_files", 0), 0);
  const HttpResponse ready = http_request(server.port(), "GET", "/ready", "", 5s);
  EXPECT_EQ(ready.status, 503);
  EXPECT_FALSE(ready.header("retry-after").empty());
  EXPECT_NE(http_request(server.port(), "GET", "/metrics", "", 5s).body.find("flux_model_load_state{state=\"downloading\"} 1"),
            std::string::npos);
  // A job is refused while downloading (503, not queued).
  EXPECT_EQ(http_request(server.port(), "POST", "/v1/jobs", R"({"prompt":"x","size":"64x64","steps":1})", 5s).status,
            503);
  hub_.set_rate(0);
  ASSERT_TRUE(server.wait_status("ready", 120s)) << server.log();
  EXPECT_EQ(http_request(server.port(), "GET", "/ready", "", 5s).status, 200);
  EXPECT_EQ(partial_bytes(), 0u);
  EXPECT_EQ(server.terminate(), 0) << server.log();
}

TEST_F(ServerHub, SigtermDuringTheDownloadExitsPromptlyAndLeavesAResumablePartial) {
  hub_.set_rate(100 * 1024);
  ServerProcess server({"--model", "test-org/FLUX.1-tiny", "--allow-download"});
  ASSERT_TRUE(poll_until([&] { return partial_bytes() > 50000; }, 60s)) << server.log();
  const auto t0 = std::chrono::steady_clock::now();
  const int code = server.terminate(10s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, 0) << server.log();
  EXPECT_LT(seconds, 2.0) << server.log();
  EXPECT_GT(partial_bytes(), 50000u);
}

TEST_F(ServerHub, SigtermWhileTheHubHangsExitsPromptly) {
  hub_.hang_listing(true);  // the listing request never answers
  ServerProcess server({"--model", "test-org/FLUX.1-tiny", "--allow-download"});
  ASSERT_TRUE(poll_until([&] { return hub_.requests() >= 1; }, 30s)) << server.log();
  EXPECT_EQ(health(server.port()).value("status", ""), "downloading");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server.terminate(10s), 0) << server.log();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0) << server.log();
  hub_.hang_listing(false);
}

TEST_F(ServerHub, AnUncachedNameWithoutAllowDownloadFailsBeforeListening) {
  const std::vector<std::string> argv = {FLUX_CLI_PATH, "serve", "--model", "test-org/FLUX.1-tiny", "--port", "0"};
  const RunResult r = run_process(argv);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--allow-download"), std::string::npos) << r.err;
  EXPECT_EQ(hub_.requests(), 0u);
}

}  // namespace
}  // namespace flux::test
