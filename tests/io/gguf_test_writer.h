// Test helper: writes GGUF v2/v3 images byte by byte (every KV value type, any tensor type id, offsets as
// given or laid out with the alignment), so reader tests can build both valid and malformed files; and the
// llama.cpp names of T5 encoder tensors, to build T5 GGUF files from HF-named weights.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace flux::test {

class GgufWriter {
 public:
  struct TensorSpec {
    std::string name;
    uint32_t ggml_type = 0;
    std::vector<uint64_t> ne;        // innermost first
    std::string data;                // raw bytes
    std::optional<uint64_t> offset;  // relative to the data section; none = the next aligned position
  };

  uint32_t version = 3;
  uint64_t alignment = 32;  // layout only; add a "general.alignment" KV to store it
  std::vector<GgufKV> kv;
  std::vector<TensorSpec> tensors;
  // Overrides for malformed files: counts written instead of the real ones.
  int64_t n_tensors_override = -1, n_kv_override = -1;

  void add_kv(const std::string& key, GgufValue value) { kv.push_back({key, std::move(value)}); }
  void add_tensor(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> ne, std::string data,
                  std::optional<uint64_t> offset = std::nullopt) {
    tensors.push_back({name, ggml_type, std::move(ne), std::move(data), offset});
  }
  // A tensor from a fluxcpp Tensor (its dtype's GGUF type, ne = shape reversed).
  void add_tensor(const std::string& name, const Tensor& t) {
    std::vector<uint64_t> ne;
    for (int i = t.ndim() - 1; i >= 0; --i) ne.push_back(static_cast<uint64_t>(t.shape()[i]));
    add_tensor(name, ggml_type_of(t.dtype()), std::move(ne),
               std::string(static_cast<const char*>(t.raw()), t.nbytes()));
  }

  template <typename T>
  static void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static void put_string(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
  }

  // The header alone (no padding): magic .. last tensor info.
  std::string header() const {
    std::string out = "GGUF";
    put<uint32_t>(out, version);
    put<uint64_t>(out, n_tensors_override >= 0 ? static_cast<uint64_t>(n_tensors_override) : tensors.size());
    put<uint64_t>(out, n_kv_override >= 0 ? static_cast<uint64_t>(n_kv_override) : kv.size());
    for (const GgufKV& p : kv) {
      put_string(out, p.key);
      put<uint32_t>(out, static_cast<uint32_t>(p.value.type()));
      append_gguf_value(out, p.value, p.key);
    }
    uint64_t next = 0;
    for (const TensorSpec& t : tensors) {
      put_string(out, t.name);
      put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t n : t.ne) put<uint64_t>(out, n);
      put<uint32_t>(out, t.ggml_type);
      const uint64_t offset = t.offset.value_or(next);
      put<uint64_t>(out, offset);
      next = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    return out;
  }

  // The whole file: header, padding to the alignment, each tensor's bytes at its offset.
  std::string bytes() const {
    std::string out = header();
    out.append((alignment - out.size() % alignment) % alignment, '\0');
    const size_t data_start = out.size();
    uint64_t next = 0;
    for (const TensorSpec& t : tensors) {
      const uint64_t offset = t.offset.value_or(next);
      if (offset > (uint64_t{1} << 32)) continue;  // a malformed file's absurd offset: nothing to write
      if (out.size() < data_start + offset + t.data.size()) out.resize(data_start + offset + t.data.size(), '\0');
      std::memcpy(out.data() + data_start + offset, t.data.data(), t.data.size());
      next = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    return out;
  }

  void write(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    const std::string b = bytes();
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
};

inline GgufValue gguf_array(GgufType type, std::vector<GgufValue> items) {
  return GgufValue{GgufArray{type, std::move(items)}};
}

// The test's own statement of llama.cpp's T5 encoder names (gguf-py MODEL_TENSOR.ENC_*): HF -> GGUF.
inline std::string llama_cpp_t5_name(const std::string& hf) {
  if (hf == "shared.weight") return "token_embd.weight";
  if (hf == "encoder.final_layer_norm.weight") return "enc.output_norm.weight";
  const std::pair<const char*, const char*> tails[] = {
      {"layer.0.SelfAttention.q.weight", "attn_q.weight"},
      {"layer.0.SelfAttention.k.weight", "attn_k.weight"},
      {"layer.0.SelfAttention.v.weight", "attn_v.weight"},
      {"layer.0.SelfAttention.o.weight", "attn_o.weight"},
      {"layer.0.SelfAttention.relative_attention_bias.weight", "attn_rel_b.weight"},
      {"layer.0.layer_norm.weight", "attn_norm.weight"},
      {"layer.1.DenseReluDense.wi_0.weight", "ffn_gate.weight"},
      {"layer.1.DenseReluDense.wi_1.weight", "ffn_up.weight"},
      {"layer.1.DenseReluDense.wo.weight", "ffn_down.weight"},
      {"layer.1.layer_norm.weight", "ffn_norm.weight"},
  };
  const std::string block = "encoder.block.";
  EXPECT_EQ(hf.rfind(block, 0), 0u) << hf;
  const size_t dot = hf.find('.', block.size());
  for (const auto& [from, to] : tails)
    if (hf.substr(dot + 1) == from) return "enc.blk." + hf.substr(block.size(), dot - block.size()) + "." + to;
  ADD_FAILURE() << "no llama.cpp name for " << hf;
  return hf;
}

}  // namespace flux::test
