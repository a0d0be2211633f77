// Downloads from the mock hub (tests/hub/mock) into a fresh cache: the huggingface_hub layout, resume with
// Range, checksums, gated repositories, errors naming the repository and file, offline mode, stopping.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "hub/hf_cache.h"
#include "hub/hf_download.h"
#include "hub_test_util.h"
#include "mock_hub.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kRepo = "test-org/FLUX.1-tiny";

// Sizes of the files the pipeline needs that the mock serves as LFS (the bytes a download transfers from /lfs/).
uint64_t lfs_bytes_needed() {
  uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(tiny_hub_model())) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext == ".gz") continue;  // not needed by the pipeline
    if (ext == ".safetensors" || ext == ".model" || e.file_size() >= 100 * 1024) n += e.file_size();
  }
  return n;
}

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = temp_dir("hub-cache");
    hub_.add_repo(kRepo, kCommit, tiny_hub_model());
  }
  hub::HubRef ref(const std::string& file = "") {
    hub::HubRef r;
    r.repo_id = kRepo;
    r.file = file;
    return r;
  }
  std::string repo_dir() const { return hub::repo_cache_dir(cache_, kRepo); }
  MockHub hub_;
  std::string cache_;
};

TEST_F(HubDownload, WritesTheHuggingFaceHubLayout) {
  std::vector<hub::DownloadProgress> reports;
  const hub::ResolvedModel m = hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint()),
                                                  [&](const hub::DownloadProgress& p) { reports.push_back(p); });
  EXPECT_EQ(m.commit, kCommit);
  EXPECT_EQ(m.dir, repo_dir() + "/snapshots/" + kCommit);
  EXPECT_EQ(read_file(repo_dir() + "/refs/main"), kCommit);  // no newline, as huggingface_hub writes it
  // Every needed file is a relative link to blobs/ETAG with the right content; blobs by sha256 (LFS) or git sha1.
  size_t n_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tiny_hub_model())) {
    if (!e.is_regular_file() || e.path().extension() == ".gz") continue;
    const std::string rel = fs::relative(e.path(), tiny_hub_model()).string();
    const fs::path link = fs::path(m.dir) / rel;
    ASSERT_TRUE(fs::is_symlink(link)) << link;
    const std::string content = read_file(e.path().string());
    const bool lfs =
        e.path().extension() == ".safetensors" || e.path().extension() == ".model" || content.size() >= 100 * 1024;
    const std::string etag = lfs ? sha256_hex(content) : git_blob_sha1(content);
    std::string expected = "../../";
    for (char c : rel)
      if (c == '/') expected += "../";
    EXPECT_EQ(fs::read_symlink(link).string(), expected + "blobs/" + etag) << rel;
    EXPECT_EQ(read_file(link.string()), content) << rel;
    ++n_files;
  }
  EXPECT_GE(n_files, 15u);
  for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs"))
    EXPECT_NE(e.path().extension(), ".incomplete") << e.path();
  EXPECT_EQ(m.files_downloaded, n_files);
  EXPECT_FALSE(fs::exists(fs::path(m.dir) / "tokenizer/bpe_simple_vocab_16e6.txt.gz"));
  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().finished);
  EXPECT_EQ(reports.back().bytes_done, reports.back().bytes_total);

  // A second call finds everything cached: one listing request, nothing transferred.
  const uint64_t requests = hub_.requests();
  const hub::ResolvedModel again = hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint()));
  EXPECT_EQ(again.files_downloaded, 0u);
  EXPECT_EQ(hub_.requests(), requests + 1);
}

TEST_F(HubDownload, OneFileByName) {
  const hub::ResolvedModel m =
      hub::resolve_model(ref("vae/diffusion_pytorch_model.safetensors"), mock_options(cache_, hub_.endpoint()));
  EXPECT_EQ(m.files_downloaded, 1u);
  EXPECT_EQ(read_file(m.file), read_file(tiny_hub_model() + "/vae/diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(fs::read_symlink(m.file).string(),
            "../../../blobs/" + sha256_hex(read_file(tiny_hub_model() + "/vae/diffusion_pytorch_model.safetensors")));
}

TEST_F(HubDownload, ResumesAfterTheConnectionDropsWithoutFetchingBytesTwice) {
  hub_.cut_after(300000);  // the first LFS body closes after 300 KB
  const std::string first = error_of([&] { hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(first.find("run again to resume"), std::string::npos) << first;
  EXPECT_EQ(hub_.lfs_bytes_served(), 300000u);
  size_t partial = 0;
  for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs"))
    if (e.path().extension() == ".incomplete") partial += e.file_size();
  EXPECT_EQ(partial, 300000u);
  const hub::ResolvedModel m = hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint()));
  EXPECT_EQ(hub_.lfs_bytes_served(), lfs_bytes_needed());  // the first 300 KB were not sent again
  bool ranged = false;
  for (const std::string& r : hub_.request_log()) ranged |= r.rfind("GET /lfs/", 0) == 0;
  EXPECT_TRUE(ranged);
  EXPECT_EQ(read_file(m.dir + "/transformer/diffusion_pytorch_model-00001-of-00002.safetensors"),
            read_file(tiny_hub_model() + "/transformer/diffusion_pytorch_model-00001-of-00002.safetensors"));
  for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs"))
    EXPECT_NE(e.path().extension(), ".incomplete") << e.path();
}

TEST_F(HubDownload, ACorruptedByteIsRefusedAndNothingIsLinked) {
  hub_.corrupt_at(1000);
  const std::string file = "vae/diffusion_pytorch_model.safetensors";
  const std::string error = error_of([&] { hub::resolve_model(ref(file), mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
  EXPECT_NE(error.find(file), std::string::npos) << error;
  const std::string etag = sha256_hex(read_file(tiny_hub_model() + "/" + file));
  EXPECT_FALSE(fs::exists(repo_dir() + "/blobs/" + etag));
  EXPECT_FALSE(fs::exists(repo_dir() + "/blobs/" + etag + ".incomplete"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(repo_dir() + "/snapshots/" + kCommit + "/" + file)));
}

TEST_F(HubDownload, GatedRepositoryNeedsTheToken) {
  hub_.add_repo("gated-org/FLUX.1-gated", kCommit, tiny_hub_model(), "secret-token");
  hub::HubRef gated;
  gated.repo_id = "gated-org/FLUX.1-gated";
  gated.file = "model_index.json";
  hub::HubOptions o = mock_options(cache_, hub_.endpoint());
  const std::string error = error_of([&] { hub::resolve_model(gated, o); });
  EXPECT_NE(error.find("HF_TOKEN"), std::string::npos) << error;
  EXPECT_NE(error.find("401"), std::string::npos) << error;
  EXPECT_NE(error.find("gated"), std::string::npos) << error;
  o.token = "wrong";
  EXPECT_NE(error_of([&] { hub::resolve_model(gated, o); }).find("refused"), std::string::npos);
  o.token = "secret-token";
  const hub::ResolvedModel m = hub::resolve_model(gated, o);
  EXPECT_EQ(read_file(m.file), read_file(tiny_hub_model() + "/model_index.json"));
}

TEST_F(HubDownload, NotFoundNamesRepositoryRevisionAndFile) {
  hub::HubRef r = ref();
  r.repo_id = "test-org/no-such-model";
  std::string e = error_of([&] { hub::resolve_model(r, mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(e.find("test-org/no-such-model"), std::string::npos) << e;
  EXPECT_NE(e.find("404"), std::string::npos) << e;
  r = ref();
  r.revision = "v9";
  e = error_of([&] { hub::resolve_model(r, mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(e.find("revision \"v9\""), std::string::npos) << e;
  e = error_of([&] { hub::resolve_model(ref("missing.gguf"), mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(e.find("missing.gguf"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(repo_dir() + "/snapshots"));
}

TEST_F(HubDownload, OfflineUsesTheCacheAndNeverConnects) {
  hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint()));
  const uint64_t requests = hub_.requests();
  hub::HubOptions offline = mock_options(cache_, hub_.endpoint());
  offline.offline = true;
  const hub::ResolvedModel m = hub::resolve_model(ref(), offline);
  EXPECT_EQ(m.dir, repo_dir() + "/snapshots/" + kCommit);
  EXPECT_EQ(hub_.requests(), requests);
  // Not cached: an error naming HF_HUB_OFFLINE, still no request.
  hub::HubRef other = ref();
  other.repo_id = "test-org/other";
  const std::string e = error_of([&] { hub::resolve_model(other, offline); });
  EXPECT_NE(e.find("HF_HUB_OFFLINE"), std::string::npos) << e;
  EXPECT_EQ(hub_.requests(), requests);
  // From the environment too.
  ScopedEnv env("HF_HUB_OFFLINE", "1");
  EXPECT_TRUE(hub::HubOptions::from_environment().offline);
}

TEST_F(HubDownload, WithoutDownloadAMissingModelNamesTheFlag) {
  hub::HubOptions o = mock_options(cache_, hub_.endpoint());
  o.allow_download = false;
  const std::string e = error_of([&] { hub::resolve_model(ref(), o); });
  EXPECT_NE(e.find("--download"), std::string::npos) << e;
  EXPECT_EQ(hub_.requests(), 0u);
}

TEST_F(HubDownload, StopsPromptlyAndLeavesAResumablePartial) {
  hub_.set_rate(200 * 1024);  // 200 KB/s: the 6 MB text encoder takes 30 s
  std::stop_source stop;
  std::thread stopper([&] {
    for (int i = 0; i < 500; ++i) {
      if (hub_.lfs_bytes_served() > 100000) break;
      std::this_thread::sleep_for(10ms);
    }
    stop.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(hub::resolve_model(ref("text_encoder/model.safetensors"), mock_options(cache_, hub_.endpoint()), {},
                                  stop.get_token()),
               Cancelled);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stopper.join();
  EXPECT_LT(seconds, 10.0);
  uint64_t partial = 0;
  for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs"))
    if (e.path().extension() == ".incomplete") partial += e.file_size();
  EXPECT_GT(partial, 100000u);
  hub_.set_rate(0);
  const hub::ResolvedModel m =
      hub::resolve_model(ref("text_encoder/model.safetensors"), mock_options(cache_, hub_.endpoint()));
  EXPECT_EQ(read_file(m.file), read_file(tiny_hub_model() + "/text_encoder/model.safetensors"));
}

TEST_F(HubDownload, AFullDiskNamesThePathAndTheBytesNeeded) {
  const std::string file = "vae/diffusion_pytorch_model.safetensors";
  const uint64_t huge = uint64_t{1} << 52;  // 4 PiB: more than any test machine's disk
  hub_.announce_size(kRepo, file, huge);
  const std::string e = error_of([&] { hub::resolve_model(ref(file), mock_options(cache_, hub_.endpoint())); });
  EXPECT_NE(e.find("not enough disk space"), std::string::npos) << e;
  EXPECT_NE(e.find(repo_dir() + "/blobs"), std::string::npos) << e;
  EXPECT_NE(e.find(std::to_string(huge)), std::string::npos) << e;
  EXPECT_EQ(hub_.lfs_bytes_served(), 0u);  // refused before the transfer
  EXPECT_FALSE(fs::exists(fs::symlink_status(repo_dir() + "/snapshots/" + kCommit + "/" + file)));
}

TEST_F(HubDownload, AHungListingStopsWhenTheSinkSaysSo) {
  hub_.hang_listing(true);
  const auto t0 = std::chrono::steady_clock::now();
  size_t polls = 0;
  EXPECT_THROW(hub::resolve_model(ref(), mock_options(cache_, hub_.endpoint()),
                                  [&](const hub::DownloadProgress& p) {
                                    EXPECT_TRUE(p.file.empty());  // no file yet: a metadata request
                                    ++polls;
                                    if (std::chrono::steady_clock::now() - t0 > 300ms) throw Cancelled();
                                  }),
               Cancelled);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
  EXPECT_GE(polls, 1u);
  hub_.hang_listing(false);
}

TEST_F(HubDownload, UnreachableHubIsAnErrorNamingTheEndpoint) {
  hub::HubOptions o = mock_options(cache_, "http://127.0.0.1:1");
  const std::string e = error_of([&] { hub::resolve_model(ref(), o); });
  EXPECT_NE(e.find("cannot reach the hub"), std::string::npos) << e;
  EXPECT_NE(e.find("127.0.0.1:1"), std::string::npos) << e;
}

}  // namespace
}  // namespace flux::test
