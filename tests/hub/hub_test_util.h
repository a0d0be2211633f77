// Shared by the hub tests: the tiny test model (made once per process), environment overrides, file helpers.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "hub/hf_download.h"
#include "pipeline/test_model.h"
#include "test_util.h"

namespace flux::test {

inline const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

// The tiny diffusers test model, written once per process.
inline const std::string& tiny_hub_model() {
  static const std::string dir = [] {
    const std::string d = temp_dir("hub-model");
    TestModelOptions o;
    o.tokenizers = tokenizer_dir();
    make_test_model(d, o);
    return d;
  }();
  return dir;
}

inline hub::HubOptions mock_options(const std::string& cache, const std::string& endpoint) {
  hub::HubOptions o;
  o.cache = cache;
  o.endpoint = endpoint;
  o.allow_download = true;
  o.connect_timeout_s = 5;
  o.stall_timeout_s = 5;
  o.request_timeout_s = 20;
  return o;
}

// Every entry under `dir` (links not followed) with its size and modification time: equal before and after means
// nothing was written.
inline std::map<std::string, std::string> tree_state(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st {};
    ::lstat(e.path().c_str(), &st);
    out[e.path().string()] = std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
                             std::to_string(st.st_mtim.tv_nsec) + "/" + std::to_string(st.st_mode);
  }
  return out;
}

}  // namespace flux::test
