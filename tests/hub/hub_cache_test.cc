// The cache as huggingface_hub lays it out, made here by hand (Python is not available to the tests): found
// through HF_HUB_CACHE / HF_HOME, used read-only and in place (a generation reads it, nothing is written), and
// listed by `fluxcpp ls`.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "hub/hf_cache.h"
#include "hub/hf_download.h"
#include "hub_test_util.h"
#include "mock_hub.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;

// The layout of huggingface_hub's file_download.py (hf_hub_download): blobs named by the ETag (the sha256 of a
// large file, the git blob sha1 of a small one), snapshots/COMMIT/PATH -> ../../blobs/ETAG (one ../ more per
// folder), refs/main holding the commit without a newline.
void write_hf_cache(const std::string& cache, const std::string& repo_id, const std::string& commit,
                    const std::string& model) {
  const fs::path repo = hub::repo_cache_dir(cache, repo_id);
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "refs");
  std::ofstream(repo / "refs" / "main", std::ios::binary) << commit;
  for (const auto& e : fs::recursive_directory_iterator(model)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), model).string();
    const std::string content = read_file(e.path().string());
    const bool lfs =
        e.path().extension() == ".safetensors" || e.path().extension() == ".model" || content.size() >= 100 * 1024;
    const std::string etag = lfs ? sha256_hex(content) : git_blob_sha1(content);
    std::ofstream(repo / "blobs" / etag, std::ios::binary) << content;
    std::string target = "../../";
    for (char c : rel)
      if (c == '/') target += "../";
    const fs::path link = repo / "snapshots" / commit / rel;
    fs::create_directories(link.parent_path());
    fs::create_symlink(target + "blobs/" + etag, link);
  }
}

void set_writable(const std::string& dir, bool writable) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (!e.is_symlink())
      fs::permissions(e.path(), fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                      writable ? fs::perm_options::add : fs::perm_options::remove);
  fs::permissions(dir, fs::perms::owner_write, writable ? fs::perm_options::add : fs::perm_options::remove);
}

TEST(HubCache, CacheDirFromTheEnvironment) {
  ScopedEnv a("HF_HUB_CACHE", "/x/hub-cache");
  EXPECT_EQ(hub::hub_cache_dir(), "/x/hub-cache");
  ::unsetenv("HF_HUB_CACHE");
  ScopedEnv legacy("HUGGINGFACE_HUB_CACHE", "");
  ScopedEnv b("HF_HOME", "/y/hf");
  EXPECT_EQ(hub::hub_cache_dir(), "/y/hf/hub");
  ::unsetenv("HF_HOME");
  ScopedEnv c("XDG_CACHE_HOME", "/z");
  EXPECT_EQ(hub::hub_cache_dir(), "/z/huggingface/hub");
  ::unsetenv("XDG_CACHE_HOME");
  ScopedEnv d("HOME", "/home/u");
  EXPECT_EQ(hub::hub_cache_dir(), "/home/u/.cache/huggingface/hub");
}

TEST(HubCache, AHandMadeHuggingFaceHubCacheIsUsedReadOnlyAndInPlace) {
  const std::string cache = temp_dir("hub-handmade");
  write_hf_cache(cache, "black-forest-labs/FLUX.1-tiny", kCommit, tiny_hub_model());
  set_writable(cache, false);
  const auto before = tree_state(cache);

  hub::HubRef ref = hub::parse_hub_ref("black-forest-labs/FLUX.1-tiny");
  hub::HubOptions o = mock_options(cache, "http://127.0.0.1:1");  // never contacted
  o.allow_download = false;
  const hub::ResolvedModel m = hub::resolve_model(ref, o);
  EXPECT_EQ(m.dir, cache + "/models--black-forest-labs--FLUX.1-tiny/snapshots/" + kCommit);
  // By commit too, and one file.
  ref.revision = kCommit;
  ref.file = "vae/config.json";
  EXPECT_EQ(read_file(hub::resolve_model(ref, o).file), read_file(tiny_hub_model() + "/vae/config.json"));

  // A generation through the CLI from the name, with the cache found through HF_HUB_CACHE.
  const std::string out = temp_dir("hub-handmade-out") + "/x.png";
  ScopedEnv env("HF_HUB_CACHE", cache);
  const RunResult r =
      run_process({FLUX_CLI_PATH, "generate", "--model", "black-forest-labs/FLUX.1-tiny", "-p", "a red fox", "-W", "64",
                   "-H", "64", "--steps", "1", "--seed", "3", "-o", out, "-q"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
  // `fluxcpp ls` lists it with its size (every blob of the tiny model: more than 20 MiB).
  const RunResult ls = run_process({FLUX_CLI_PATH, "ls"});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_NE(ls.out.find("black-forest-labs/FLUX.1-tiny"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("MiB"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(std::string("main -> ") + kCommit), std::string::npos) << ls.out;

  EXPECT_EQ(tree_state(cache), before);  // nothing written, nothing touched
  set_writable(cache, true);
}

TEST(HubCache, ListsOnlyFluxModelsWithSizes) {
  const std::string cache = temp_dir("hub-list");
  const fs::path other = hub::repo_cache_dir(cache, "someone/bert-base");
  fs::create_directories(other / "blobs");
  std::ofstream(other / "blobs" / "abc") << "12345";
  const fs::path flux = hub::repo_cache_dir(cache, "city96/FLUX.1-schnell-gguf");
  fs::create_directories(flux / "blobs");
  std::ofstream(flux / "blobs" / "def") << std::string(2048, 'x');
  std::ofstream(flux / "blobs" / "fed.incomplete") << std::string(100, 'x');
  const auto repos = hub::list_cache(cache);
  ASSERT_EQ(repos.size(), 2u);
  EXPECT_EQ(repos[0].repo_id, "city96/FLUX.1-schnell-gguf");
  EXPECT_TRUE(repos[0].flux);
  EXPECT_EQ(repos[0].bytes, 2048u);
  EXPECT_EQ(repos[0].partial_bytes, 100u);
  EXPECT_EQ(repos[1].repo_id, "someone/bert-base");
  EXPECT_FALSE(repos[1].flux);
  EXPECT_EQ(repos[1].bytes, 5u);
  EXPECT_TRUE(hub::list_cache(cache + "/missing").empty());
}

}  // namespace
}  // namespace flux::test
