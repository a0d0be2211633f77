// libFuzzer target: the CLIP and T5 tokenizers on arbitrary bytes (invalid UTF-8, markup, special tokens).
// Every input must give well-formed ids (right length, BOS/EOS in place, ids inside the vocabularies); a crash,
// a hang or an exception is a bug.
//
// The tokenizer files are read at start-up from, in order: $FLUX_TOKENIZER_DIR (a folder with clip-l/ + t5/
// or tokenizer/ + tokenizer_2/), $FLUX_SHARED_DIR/tokenizers, ../shared/tokenizers relative to the working
// directory, then to the executable (build-*/fuzz/fuzz_tokenizer -> ../../../shared). Without them the target
// stops with a message instead of fuzzing nothing.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace {

std::unique_ptr<flux::ClipTokenizer> clip;
std::unique_ptr<flux::T5Tokenizer> t5;

std::string find_tokenizers() {
  std::vector<std::string> candidates;
  if (const char* dir = std::getenv("FLUX_TOKENIZER_DIR")) candidates.emplace_back(dir);
  if (const char* shared = std::getenv("FLUX_SHARED_DIR")) candidates.push_back(std::string(shared) + "/tokenizers");
  candidates.emplace_back("../shared/tokenizers");
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back((exe.parent_path() / "../../../shared/tokenizers").string());
  for (const std::string& dir : candidates)
    if (std::filesystem::is_directory(dir)) return dir;
  return "";
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string dir = find_tokenizers();
  if (dir.empty()) {
    std::fprintf(stderr, "fuzz_tokenizer: set FLUX_TOKENIZER_DIR to a folder with clip-l/ and t5/\n");
    std::exit(2);
  }
  try {
    const flux::TokenizerDirs dirs = flux::find_tokenizer_dirs(dir);
    clip = std::make_unique<flux::ClipTokenizer>(flux::ClipTokenizer::load(dirs.clip));
    t5 = std::make_unique<flux::T5Tokenizer>(flux::T5Tokenizer::load(dirs.t5));
  } catch (const flux::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", e.what());
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const flux::ClipTokens c = clip->encode(text);
  if (c.ids.size() != 77 || c.ids[0] != flux::ClipTokenizer::kBos || c.untruncated_len < 2) __builtin_trap();
  if (c.ids[static_cast<size_t>(std::min(c.untruncated_len, 77) - 1)] != flux::ClipTokenizer::kEos) __builtin_trap();
  if (c.pool_index < 1 || c.ids[static_cast<size_t>(c.pool_index)] != flux::ClipTokenizer::kEos) __builtin_trap();
  for (int32_t id : c.ids)
    if (id < 0 || id > flux::ClipTokenizer::kEos) __builtin_trap();
  const flux::T5Tokens t = t5->encode(text, 256);
  if (t.ids.size() != 256 || t.untruncated_len < 1) __builtin_trap();
  if (t.ids[static_cast<size_t>(std::min(t.untruncated_len, 256) - 1)] != flux::T5Tokenizer::kEos) __builtin_trap();
  for (int32_t id : t.ids)
    if (id < 0 || id >= 32100) __builtin_trap();
  return 0;
}
