// The CLI with models by name against the mock hub: `generate --download` (a full download, then a generation
// from the name), offline reuse, `pull`, and the errors users see.
#include <gtest/gtest.h>

#include <filesystem>

#include "hub/hf_cache.h"
#include "hub_test_util.h"
#include "mock_hub.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;

RunResult fluxcpp(std::vector<std::string> args) {
  args.insert(args.begin(), FLUX_CLI_PATH);
  return run_process(args);
}

class HubCli : public ::testing::Test {
 protected:
  HubCli()
      : cache_(temp_dir("hub-cli-cache")),
        env_cache_("HF_HUB_CACHE", cache_),
        env_endpoint_("HF_ENDPOINT", hub_.endpoint()),
        env_token_("HF_TOKEN", ""),
        env_offline_("HF_HUB_OFFLINE", "0") {
    hub_.add_repo("test-org/FLUX.1-tiny", kCommit, tiny_hub_model());
  }
  MockHub hub_;
  std::string cache_;
  ScopedEnv env_cache_, env_endpoint_, env_token_, env_offline_;
};

TEST_F(HubCli, GenerateDownloadsThenGeneratesFromTheName) {
  const std::string out = temp_dir("hub-cli-out") + "/fox.png";
  const std::vector<std::string> args = {"generate", "--model", "test-org/FLUX.1-tiny",
                                         "-p",       "a fox",   "-W",
                                         "64",       "-H",      "64",
                                         "--steps",  "1",       "--seed",
                                         "1",        "-o",      out};
  std::vector<std::string> with_download = args;
  with_download.push_back("--download");
  const RunResult r = fluxcpp(with_download);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_NE(r.err.find("download "), std::string::npos) << r.err;  // a progress line per file
  EXPECT_NE(r.err.find("transformer/diffusion_pytorch_model-00001-of-00002.safetensors [####################] 100%"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(fs::is_symlink(hub::snapshot_dir(cache_, "test-org/FLUX.1-tiny", kCommit) + "/model_index.json"));

  // Offline, from the cache: the same image, no request.
  const uint64_t requests = hub_.requests();
  ScopedEnv offline("HF_HUB_OFFLINE", "1");
  const std::string out2 = out + ".2.png";
  std::vector<std::string> again = args;
  again.back() = out2;
  const RunResult r2 = fluxcpp(again);
  ASSERT_EQ(r2.status, 0) << r2.err;
  EXPECT_EQ(hub_.requests(), requests);
  EXPECT_EQ(read_file(out), read_file(out2));
}

TEST_F(HubCli, WithoutDownloadAnUncachedNameIsAClearError) {
  const RunResult r = fluxcpp({"generate", "--model", "test-org/FLUX.1-tiny", "-p", "x", "-o", "/dev/null"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--download"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("test-org/FLUX.1-tiny"), std::string::npos) << r.err;
  EXPECT_EQ(hub_.requests(), 0u);
}

TEST_F(HubCli, PullOneFileAndTheGatedError) {
  const RunResult r = fluxcpp({"pull", "test-org/FLUX.1-tiny:vae/diffusion_pytorch_model.safetensors", "-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string path = r.out;
  while (!path.empty() && path.back() == '\n') path.pop_back();
  EXPECT_EQ(read_file(path), read_file(tiny_hub_model() + "/vae/diffusion_pytorch_model.safetensors"));

  hub_.add_repo("gated-org/FLUX.1-dev-tiny", kCommit, tiny_hub_model(), "tok");
  const RunResult gated = fluxcpp({"pull", "gated-org/FLUX.1-dev-tiny"});
  EXPECT_EQ(gated.status, 1);
  EXPECT_NE(gated.err.find("HF_TOKEN"), std::string::npos) << gated.err;
  ScopedEnv token("HF_TOKEN", "tok");
  const RunResult ok = fluxcpp({"pull", "gated-org/FLUX.1-dev-tiny", "-q"});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

}  // namespace
}  // namespace flux::test
