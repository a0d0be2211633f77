#include "pipeline/gguf_layout.h"

#include <set>

#include "base/error.h"

namespace flux {
namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
int64_t row_length(const Shape& s) { return s.ndim() == 0 ? 1 : s[s.ndim() - 1]; }
GgufValue u32(int64_t v) { return GgufValue{static_cast<uint32_t>(v)}; }

}  // namespace

const std::vector<GgufFileType>& gguf_file_types() {
  static const std::vector<GgufFileType> types = {
      {"q8_0", DType::q8_0, 7},  {"q4_0", DType::q4_0, 2},  {"q4_1", DType::q4_1, 3},  {"q5_0", DType::q5_0, 8},
      {"q5_1", DType::q5_1, 9},  {"q4_K", DType::q4_K, 14}, {"q5_K", DType::q5_K, 16}, {"q6_K", DType::q6_K, 18},
      {"q3_K", DType::q3_K, 11}, {"q2_K", DType::q2_K, 10}, {"f16", DType::f16, 1},    {"bf16", DType::bf16, 32},
  };
  return types;
}

const GgufFileType& parse_gguf_file_type(const std::string& s) {
  std::string names;
  for (const GgufFileType& t : gguf_file_types()) {
    if (s == t.name) return t;
    names += names.empty() ? t.name : str_cat(", ", t.name);
  }
  fail("--type: expected one of ", names, "; got '", s, "'");
}

bool is_k_quant(DType d) { return dtype_block_size(d) == 256; }
bool whole_blocks(const Shape& s, DType d) { return row_length(s) % dtype_block_size(d) == 0; }

DType city96_type(const std::string& name, const Shape& shape, DType type) {
  static const std::set<std::string> f32 = {"img_in.weight", "time_in.in_layer.weight", "vector_in.in_layer.weight",
                                            "final_layer.linear.weight", "guidance_in.in_layer.weight"};
  static const std::set<std::string> f16 = {"txt_in.weight", "time_in.out_layer.weight", "vector_in.out_layer.weight",
                                            "final_layer.adaLN_modulation.1.weight", "guidance_in.out_layer.weight"};
  if (shape.ndim() <= 1 || f32.contains(name)) return DType::f32;
  if (f16.contains(name) || !whole_blocks(shape, type)) return DType::f16;  // the Q4_K_S fallback
  return type;
}

bool sdcpp_converts(const std::string& name, const Shape& shape, DType type) {
  if (is_quantized(type) && !whole_blocks(shape, type)) return false;
  if (name.ends_with(".bias") || name.ends_with(".scale") || contains(name, "embedding")) return false;
  for (const char* part : {"img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."})
    if (contains(name, part)) return false;
  return true;
}

DType t5_gguf_type(const std::string& gguf_name, const Shape& shape, DType type) {
  if (shape.ndim() <= 1 || gguf_name.ends_with("attn_rel_b.weight")) return DType::f32;
  return whole_blocks(shape, type) ? type : DType::f16;
}

std::vector<GgufKV> city96_kv(bool flux, uint32_t file_type) {
  std::vector<GgufKV> kv;
  if (flux) kv.push_back({"general.architecture", GgufValue{std::string("flux")}});
  kv.push_back({"general.quantization_version", u32(2)});
  kv.push_back({"general.file_type", u32(file_type)});
  return kv;
}

std::vector<GgufKV> t5_gguf_kv(const T5Config& c, uint32_t file_type) {
  const std::string a = "t5encoder.";
  return {
      {"general.architecture", GgufValue{std::string("t5encoder")}},
      {a + "context_length", u32(512)},  // T5 v1.1 has no n_positions; convert_hf_to_gguf assumes 512
      {a + "embedding_length", u32(c.d_model)},
      {a + "feed_forward_length", u32(c.d_ff)},
      {a + "block_count", u32(c.num_layers)},
      {a + "attention.head_count", u32(c.num_heads)},
      {a + "attention.key_length", u32(c.d_kv)},
      {a + "attention.value_length", u32(c.d_kv)},
      {a + "attention.layer_norm_epsilon", GgufValue{c.layer_norm_epsilon}},
      {a + "attention.relative_buckets_count", u32(c.relative_attention_num_buckets)},
      {a + "attention.layer_norm_rms_epsilon", GgufValue{c.layer_norm_epsilon}},
      {"general.file_type", u32(file_type)},
      {"general.quantization_version", u32(2)},
  };
}

}  // namespace flux
