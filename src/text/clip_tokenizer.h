// CLIP-L tokenizer with the semantics of HF's CLIPTokenizer as FluxPipeline calls it
// (padding="max_length", max_length=77, truncation=True): ftfy-style text fixes, whitespace collapsed,
// lower case, the CLIP pre-tokenisation regex, byte-level BPE; [49406] + ids[:75] + [49407], padded with
// 49407. Files (vocab.json, merges.txt) are read at run time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flux {

struct ClipTokens {
  std::vector<int32_t> ids;  // exactly max_length ids
  int untruncated_len = 0;   // BOS + content + EOS before truncation
  int pool_index = 0;        // index of the first EOS (49407): where CLIPTextModel pools
  bool truncated() const { return untruncated_len > static_cast<int>(ids.size()); }
};

class ClipTokenizer {
 public:
  static constexpr int32_t kBos = 49406;
  static constexpr int32_t kEos = 49407;

  // dir holds vocab.json and merges.txt. Throws Error naming the file and problem.
  static ClipTokenizer load(const std::string& dir);
  ~ClipTokenizer();
  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;

  // Any bytes are accepted (invalid UTF-8 is replaced, never a crash). Thread-safe.
  ClipTokens encode(std::string_view text, int max_length = 77) const;
  // Content ids only (no BOS/EOS, no truncation).
  std::vector<int32_t> encode_content(std::string_view text) const;
  // Empties the BPE word cache (benchmarks measure the cold case).
  void clear_cache() const;

 private:
  ClipTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flux
