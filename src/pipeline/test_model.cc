// Random-weight model sets: parameter lists in BFL / HF names, converted to diffusers names the way diffusers'
// scripts/convert_flux_to_diffusers.py and single_file_utils.convert_ldm_vae_checkpoint map them.
#include "pipeline/test_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "base/error.h"
#include "io/safetensors.h"
#include "pipeline/sampling.h"
#include "text/t5_tokenizer.h"
#include "text/test_tokenizers.h"

namespace flux {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Named = std::vector<std::pair<std::string, Tensor>>;

struct Sizes {
  // transformer
  int64_t hidden, heads, depth, single_depth;
  std::array<int64_t, 3> axes;
  // CLIP-L
  int64_t clip_hidden, clip_inter, clip_layers, clip_heads;
  // T5
  int64_t t5_d, t5_kv, t5_heads, t5_ff, t5_layers;
  // autoencoder
  int64_t ae_ch;
  std::vector<int64_t> ae_mult;
  int64_t ae_res;
};

Sizes sizes_for(TestModelSize s) {
  switch (s) {
    case TestModelSize::tiny:
      return {64, 4, 2, 2, {4, 6, 6}, 32, 128, 2, 4, 32, 16, 4, 64, 2, 32, {1, 2, 2, 2}, 1};
    case TestModelSize::small:
      return {128, 4, 2, 4, {8, 12, 12}, 64, 256, 2, 4, 64, 16, 4, 128, 2, 32, {1, 2, 2, 2}, 1};
    case TestModelSize::medium:
      return {1024, 16, 8, 20, {16, 24, 24}, 128, 512, 4, 4, 256, 32, 8, 512, 4, 64, {1, 2, 4, 4}, 1};
  }
  fail("unknown test model size");
}

// Draws N(0, std^2) values from one torch-compatible stream, in parameter order.
class Init {
 public:
  explicit Init(uint64_t seed, DType dtype) : gen_(seed), dtype_(dtype) {}
  Tensor normal(const Shape& shape, float std, float mean = 0.0f) {
    const int64_t n = shape.numel();
    std::vector<float> v = gen_.randn(std::max<int64_t>(n, 16));
    v.resize(static_cast<size_t>(n));
    for (float& x : v) x = mean + std * x;
    return Tensor::from_f32(shape, v).to(dtype_);
  }
  Tensor constant(const Shape& shape, float value) {
    std::vector<float> v(static_cast<size_t>(shape.numel()), value);
    return Tensor::from_f32(shape, v).to(dtype_);
  }

 private:
  TorchGenerator gen_;
  DType dtype_;
};

// Adds prefix.weight [out, in] (std 0.5/sqrt(in): activations stay O(1)) and prefix.bias [out].
void linear(Named& out, Init& init, const std::string& prefix, int64_t in, int64_t o, bool bias = true) {
  out.emplace_back(prefix + ".weight", init.normal(Shape{o, in}, 0.5f / std::sqrt(static_cast<float>(in))));
  if (bias) out.emplace_back(prefix + ".bias", init.normal(Shape{o}, 0.02f));
}
void conv(Named& out, Init& init, const std::string& prefix, int64_t in, int64_t o, int64_t k) {
  out.emplace_back(prefix + ".weight",
                   init.normal(Shape{o, in, k, k}, 0.8f / std::sqrt(static_cast<float>(in * k * k))));
  out.emplace_back(prefix + ".bias", init.normal(Shape{o}, 0.02f));
}
void norm(Named& out, Init& init, const std::string& prefix, int64_t dim, bool bias = true) {
  out.emplace_back(prefix + ".weight", init.constant(Shape{dim}, 1.0f));
  if (bias) out.emplace_back(prefix + ".bias", init.constant(Shape{dim}, 0.0f));
}

// ---- transformer (BFL names) ----
Named flux_weights(const Sizes& s, bool dev, Init& init) {
  Named w;
  const int64_t h = s.hidden, hd = h / s.heads, mlp = 4 * h;
  linear(w, init, "img_in", 64, h);
  linear(w, init, "time_in.in_layer", 256, h);
  linear(w, init, "time_in.out_layer", h, h);
  linear(w, init, "vector_in.in_layer", s.clip_hidden, h);
  linear(w, init, "vector_in.out_layer", h, h);
  if (dev) {
    linear(w, init, "guidance_in.in_layer", 256, h);
    linear(w, init, "guidance_in.out_layer", h, h);
  }
  linear(w, init, "txt_in", s.t5_d, h);
  for (int64_t i = 0; i < s.depth; ++i) {
    const std::string p = "double_blocks." + std::to_string(i) + ".";
    for (const char* stream : {"img", "txt"}) {
      const std::string q = p + stream;
      linear(w, init, q + "_mod.lin", h, 6 * h);
      linear(w, init, q + "_attn.qkv", h, 3 * h);
      w.emplace_back(q + "_attn.norm.query_norm.scale", init.constant(Shape{hd}, 1.0f));
      w.emplace_back(q + "_attn.norm.key_norm.scale", init.constant(Shape{hd}, 1.0f));
      linear(w, init, q + "_attn.proj", h, h);
      linear(w, init, q + "_mlp.0", h, mlp);
      linear(w, init, q + "_mlp.2", mlp, h);
    }
  }
  for (int64_t i = 0; i < s.single_depth; ++i) {
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    linear(w, init, p + "linear1", h, 3 * h + mlp);
    linear(w, init, p + "linear2", h + mlp, h);
    w.emplace_back(p + "norm.query_norm.scale", init.constant(Shape{hd}, 1.0f));
    w.emplace_back(p + "norm.key_norm.scale", init.constant(Shape{hd}, 1.0f));
    linear(w, init, p + "modulation.lin", h, 3 * h);
  }
  linear(w, init, "final_layer.adaLN_modulation.1", h, 2 * h);
  linear(w, init, "final_layer.linear", h, 64);
  return w;
}

// Rows [begin, end) of a 1-D or 2-D tensor, copied.
Tensor rows(const Tensor& t, int64_t begin, int64_t end) { return t.slice_rows(begin, end).clone(); }

Named flux_to_diffusers(const Named& bfl, const Sizes& s) {
  std::map<std::string, Tensor> m(bfl.begin(), bfl.end());
  Named out;
  const int64_t h = s.hidden;
  auto put = [&](const std::string& to, const std::string& from) {
    for (const char* suffix : {".weight", ".bias"})
      if (m.count(from + suffix)) out.emplace_back(to + suffix, m.at(from + suffix));
  };
  auto split = [&](const std::string& from, const std::vector<std::pair<std::string, int64_t>>& parts) {
    for (const char* suffix : {".weight", ".bias"}) {
      if (!m.count(from + suffix)) continue;
      int64_t at = 0;
      for (const auto& [to, n] : parts) {
        out.emplace_back(to + suffix, rows(m.at(from + suffix), at, at + n));
        at += n;
      }
    }
  };
  put("x_embedder", "img_in");
  put("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer");
  put("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer");
  put("time_text_embed.text_embedder.linear_1", "vector_in.in_layer");
  put("time_text_embed.text_embedder.linear_2", "vector_in.out_layer");
  put("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer");
  put("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer");
  put("context_embedder", "txt_in");
  for (int64_t i = 0; i < s.depth; ++i) {
    const std::string b = "double_blocks." + std::to_string(i) + ".",
                      d = "transformer_blocks." + std::to_string(i) + ".";
    put(d + "norm1.linear", b + "img_mod.lin");
    put(d + "norm1_context.linear", b + "txt_mod.lin");
    split(b + "img_attn.qkv", {{d + "attn.to_q", h}, {d + "attn.to_k", h}, {d + "attn.to_v", h}});
    split(b + "txt_attn.qkv", {{d + "attn.add_q_proj", h}, {d + "attn.add_k_proj", h}, {d + "attn.add_v_proj", h}});
    out.emplace_back(d + "attn.norm_q.weight", m.at(b + "img_attn.norm.query_norm.scale"));
    out.emplace_back(d + "attn.norm_k.weight", m.at(b + "img_attn.norm.key_norm.scale"));
    out.emplace_back(d + "attn.norm_added_q.weight", m.at(b + "txt_attn.norm.query_norm.scale"));
    out.emplace_back(d + "attn.norm_added_k.weight", m.at(b + "txt_attn.norm.key_norm.scale"));
    put(d + "attn.to_out.0", b + "img_attn.proj");
    put(d + "attn.to_add_out", b + "txt_attn.proj");
    put(d + "ff.net.0.proj", b + "img_mlp.0");
    put(d + "ff.net.2", b + "img_mlp.2");
    put(d + "ff_context.net.0.proj", b + "txt_mlp.0");
    put(d + "ff_context.net.2", b + "txt_mlp.2");
  }
  for (int64_t i = 0; i < s.single_depth; ++i) {
    const std::string b = "single_blocks." + std::to_string(i) + ".",
                      d = "single_transformer_blocks." + std::to_string(i) + ".";
    put(d + "norm.linear", b + "modulation.lin");
    split(b + "linear1", {{d + "attn.to_q", h}, {d + "attn.to_k", h}, {d + "attn.to_v", h}, {d + "proj_mlp", 4 * h}});
    out.emplace_back(d + "attn.norm_q.weight", m.at(b + "norm.query_norm.scale"));
    out.emplace_back(d + "attn.norm_k.weight", m.at(b + "norm.key_norm.scale"));
    put(d + "proj_out", b + "linear2");
  }
  put("proj_out", "final_layer.linear");
  // BFL (shift, scale) -> diffusers (scale, shift).
  for (const char* suffix : {".weight", ".bias"}) {
    const Tensor& t = m.at(std::string("final_layer.adaLN_modulation.1") + suffix);
    const Tensor shift = rows(t, 0, h), scale = rows(t, h, 2 * h);
    Tensor swapped = Tensor::empty(t.dtype(), t.shape());
    auto* dst = static_cast<uint8_t*>(swapped.raw_mut());
    std::memcpy(dst, scale.raw(), scale.nbytes());
    std::memcpy(dst + scale.nbytes(), shift.raw(), shift.nbytes());
    out.emplace_back(std::string("norm_out.linear") + suffix, swapped);
  }
  return out;
}

json flux_config(const Sizes& s, bool dev) {
  return {{"in_channels", 64},        {"out_channels", 64},      {"vec_in_dim", s.clip_hidden},
          {"context_in_dim", s.t5_d}, {"hidden_size", s.hidden}, {"mlp_ratio", 4.0},
          {"num_heads", s.heads},     {"depth", s.depth},        {"depth_single_blocks", s.single_depth},
          {"axes_dim", s.axes},       {"theta", 10000},          {"qkv_bias", true},
          {"guidance_embed", dev}};
}
json flux_diffusers_config(const Sizes& s, bool dev) {
  return {{"_class_name", "FluxTransformer2DModel"},
          {"patch_size", 1},
          {"in_channels", 64},
          {"out_channels", nullptr},
          {"num_layers", s.depth},
          {"num_single_layers", s.single_depth},
          {"attention_head_dim", s.hidden / s.heads},
          {"num_attention_heads", s.heads},
          {"joint_attention_dim", s.t5_d},
          {"pooled_projection_dim", s.clip_hidden},
          {"guidance_embeds", dev},
          {"axes_dims_rope", s.axes}};
}

// ---- autoencoder (BFL names) ----
void resnet(Named& w, Init& init, const std::string& p, int64_t in, int64_t out) {
  norm(w, init, p + "norm1", in);
  conv(w, init, p + "conv1", in, out, 3);
  norm(w, init, p + "norm2", out);
  conv(w, init, p + "conv2", out, out, 3);
  if (in != out) conv(w, init, p + "nin_shortcut", in, out, 1);
}
void attn(Named& w, Init& init, const std::string& p, int64_t c) {
  norm(w, init, p + "norm", c);
  for (const char* n : {"q", "k", "v", "proj_out"}) conv(w, init, p + n, c, c, 1);
}

Named ae_weights(const Sizes& s, Init& init) {
  Named w;
  const int64_t n = static_cast<int64_t>(s.ae_mult.size()), ch = s.ae_ch;
  // Encoder
  conv(w, init, "encoder.conv_in", 3, ch, 3);
  int64_t block_in = ch;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block_out = ch * s.ae_mult[static_cast<size_t>(i)];
    for (int64_t j = 0; j < s.ae_res; ++j) {
      resnet(w, init, "encoder.down." + std::to_string(i) + ".block." + std::to_string(j) + ".", block_in, block_out);
      block_in = block_out;
    }
    if (i != n - 1) conv(w, init, "encoder.down." + std::to_string(i) + ".downsample.conv", block_in, block_in, 3);
  }
  resnet(w, init, "encoder.mid.block_1.", block_in, block_in);
  attn(w, init, "encoder.mid.attn_1.", block_in);
  resnet(w, init, "encoder.mid.block_2.", block_in, block_in);
  norm(w, init, "encoder.norm_out", block_in);
  conv(w, init, "encoder.conv_out", block_in, 32, 3);
  // Decoder
  block_in = ch * s.ae_mult.back();
  conv(w, init, "decoder.conv_in", 16, block_in, 3);
  resnet(w, init, "decoder.mid.block_1.", block_in, block_in);
  attn(w, init, "decoder.mid.attn_1.", block_in);
  resnet(w, init, "decoder.mid.block_2.", block_in, block_in);
  for (int64_t i = n - 1; i >= 0; --i) {
    const int64_t block_out = ch * s.ae_mult[static_cast<size_t>(i)];
    for (int64_t j = 0; j <= s.ae_res; ++j) {
      resnet(w, init, "decoder.up." + std::to_string(i) + ".block." + std::to_string(j) + ".", block_in, block_out);
      block_in = block_out;
    }
    if (i != 0) conv(w, init, "decoder.up." + std::to_string(i) + ".upsample.conv", block_in, block_in, 3);
  }
  norm(w, init, "decoder.norm_out", block_in);
  conv(w, init, "decoder.conv_out", block_in, 3, 3);
  return w;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// One BFL AE name -> diffusers AutoencoderKL name; 1x1 attention convs become [C, C] linears.
std::pair<std::string, Tensor> ae_to_diffusers(const std::string& name, const Tensor& t, int64_t n_levels) {
  std::string d = name;
  const bool dec = d.starts_with("decoder.");
  // Level index: encoder.down.i -> down_blocks.i; decoder.up.i -> up_blocks.(n-1-i).
  for (const std::string key : {"encoder.down.", "decoder.up."}) {
    if (!d.starts_with(key)) continue;
    const size_t dot = d.find('.', key.size());
    const int64_t i = std::stoll(d.substr(key.size(), dot - key.size()));
    const int64_t level = dec ? n_levels - 1 - i : i;
    d = (dec ? "decoder.up_blocks." : "encoder.down_blocks.") + std::to_string(level) + d.substr(dot);
  }
  d = replace_all(d, ".block.", ".resnets.");
  d = replace_all(d, ".downsample.conv", ".downsamplers.0.conv");
  d = replace_all(d, ".upsample.conv", ".upsamplers.0.conv");
  d = replace_all(d, ".nin_shortcut.", ".conv_shortcut.");
  d = replace_all(d, ".mid.block_1.", ".mid_block.resnets.0.");
  d = replace_all(d, ".mid.block_2.", ".mid_block.resnets.1.");
  d = replace_all(d, ".norm_out.", ".conv_norm_out.");
  Tensor out = t;
  if (d.find(".mid.attn_1.") != std::string::npos) {
    d = replace_all(d, ".mid.attn_1.norm.", ".mid_block.attentions.0.group_norm.");
    d = replace_all(d, ".mid.attn_1.q.", ".mid_block.attentions.0.to_q.");
    d = replace_all(d, ".mid.attn_1.k.", ".mid_block.attentions.0.to_k.");
    d = replace_all(d, ".mid.attn_1.v.", ".mid_block.attentions.0.to_v.");
    d = replace_all(d, ".mid.attn_1.proj_out.", ".mid_block.attentions.0.to_out.0.");
    if (t.ndim() == 4) out = t.reshape(Shape{t.dim(0), t.dim(1)});
  }
  return {d, out};
}

json ae_config(const Sizes& s) {
  return {{"resolution", 256}, {"in_channels", 3},       {"ch", s.ae_ch},
          {"out_ch", 3},       {"ch_mult", s.ae_mult},   {"num_res_blocks", s.ae_res},
          {"z_channels", 16},  {"scale_factor", 0.3611}, {"shift_factor", 0.1159}};
}
json ae_diffusers_config(const Sizes& s) {
  std::vector<int64_t> block_out;
  for (int64_t m : s.ae_mult) block_out.push_back(s.ae_ch * m);
  const size_t n = s.ae_mult.size();
  return {{"_class_name", "AutoencoderKL"},
          {"in_channels", 3},
          {"out_channels", 3},
          {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
          {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
          {"block_out_channels", block_out},
          {"layers_per_block", s.ae_res},
          {"act_fn", "silu"},
          {"latent_channels", 16},
          {"norm_num_groups", 32},
          {"sample_size", 256},
          {"scaling_factor", 0.3611},
          {"shift_factor", 0.1159},
          {"use_quant_conv", false},
          {"use_post_quant_conv", false},
          {"mid_block_add_attention", true},
          {"force_upcast", true}};
}

// ---- text encoders (HF names, the same in both layouts) ----
Named clip_weights(const Sizes& s, Init& init) {
  Named w;
  const int64_t h = s.clip_hidden;
  w.emplace_back("text_model.embeddings.token_embedding.weight", init.normal(Shape{49408, h}, 0.02f));
  w.emplace_back("text_model.embeddings.position_embedding.weight", init.normal(Shape{77, h}, 0.01f));
  for (int64_t i = 0; i < s.clip_layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i) + ".";
    norm(w, init, p + "layer_norm1", h);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(w, init, p + "self_attn." + n, h, h);
    norm(w, init, p + "layer_norm2", h);
    linear(w, init, p + "mlp.fc1", h, s.clip_inter);
    linear(w, init, p + "mlp.fc2", s.clip_inter, h);
  }
  norm(w, init, "text_model.final_layer_norm", h);
  return w;
}
json clip_config(const Sizes& s) {
  return {{"architectures", {"CLIPTextModel"}},
          {"model_type", "clip_text_model"},
          {"projection_dim", 768},
          {"vocab_size", 49408},
          {"hidden_size", s.clip_hidden},
          {"intermediate_size", s.clip_inter},
          {"num_hidden_layers", s.clip_layers},
          {"num_attention_heads", s.clip_heads},
          {"max_position_embeddings", 77},
          {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5},
          {"bos_token_id", 0},
          {"eos_token_id", 2},
          {"pad_token_id", 1}};
}

Named t5_weights(const Sizes& s, Init& init) {
  Named w;
  const int64_t d = s.t5_d, inner = s.t5_kv * s.t5_heads;
  w.emplace_back("shared.weight", init.normal(Shape{32128, d}, 1.0f));
  for (int64_t i = 0; i < s.t5_layers; ++i) {
    const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
    linear(w, init, p + "0.SelfAttention.q", d, inner, false);
    linear(w, init, p + "0.SelfAttention.k", d, inner, false);
    linear(w, init, p + "0.SelfAttention.v", d, inner, false);
    linear(w, init, p + "0.SelfAttention.o", inner, d, false);
    if (i == 0)
      w.emplace_back(p + "0.SelfAttention.relative_attention_bias.weight", init.normal(Shape{32, s.t5_heads}, 0.5f));
    norm(w, init, p + "0.layer_norm", d, false);
    linear(w, init, p + "1.DenseReluDense.wi_0", d, s.t5_ff, false);
    linear(w, init, p + "1.DenseReluDense.wi_1", d, s.t5_ff, false);
    linear(w, init, p + "1.DenseReluDense.wo", s.t5_ff, d, false);
    norm(w, init, p + "1.layer_norm", d, false);
  }
  norm(w, init, "encoder.final_layer_norm", d, false);
  return w;
}
json t5_config(const Sizes& s) {
  return {{"architectures", {"T5EncoderModel"}},
          {"eos_token_id", 1},
          {"pad_token_id", 0},
          {"vocab_size", 32128},
          {"d_model", s.t5_d},
          {"d_kv", s.t5_kv},
          {"num_heads", s.t5_heads},
          {"d_ff", s.t5_ff},
          {"num_layers", s.t5_layers},
          {"feed_forward_proj", "gated-gelu"},
          {"dense_act_fn", "gelu_new"},
          {"is_gated_act", true},
          {"relative_attention_num_buckets", 32},
          {"relative_attention_max_distance", 128},
          {"layer_norm_epsilon", 1e-6},
          {"model_type", "t5"},
          {"tie_word_embeddings", false}};
}

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(1) << "\n";
  FLUX_CHECK(out.good(), "make-test-model: cannot write ", path.string());
}

uint64_t bytes_of(const Named& w) {
  uint64_t n = 0;
  for (const auto& [name, t] : w) n += t.nbytes();
  return n;
}

std::map<std::string, std::string> meta(const json& config) {
  return {{"format", "pt"}, {"generator", "fluxcpp make-test-model"}, {"config", config.dump()}};
}

// Two shards plus diffusers' "<stem>.safetensors.index.json".
void write_sharded(const fs::path& dir, const std::string& stem, const Named& w) {
  const size_t half = w.size() / 2;
  const Named a(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(half)),
      b(w.begin() + static_cast<std::ptrdiff_t>(half), w.end());
  const std::string fa = stem + "-00001-of-00002.safetensors", fb = stem + "-00002-of-00002.safetensors";
  write_safetensors((dir / fa).string(), a, {{"format", "pt"}});
  write_safetensors((dir / fb).string(), b, {{"format", "pt"}});
  json map = json::object();
  for (const auto& [name, t] : a) map[name] = fa;
  for (const auto& [name, t] : b) map[name] = fb;
  write_json(dir / (stem + ".safetensors.index.json"),
             {{"metadata", {{"total_size", bytes_of(w)}}}, {"weight_map", map}});
}

void copy_files(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from))
    if (e.is_regular_file()) fs::copy_file(e.path(), to / e.path().filename(), fs::copy_options::overwrite_existing);
}

}  // namespace

TestModelSize parse_test_model_size(const std::string& s) {
  if (s == "tiny") return TestModelSize::tiny;
  if (s == "small") return TestModelSize::small;
  if (s == "medium") return TestModelSize::medium;
  fail("--size: expected tiny, small or medium, got '", s, "'");
}
TestModelLayout parse_test_model_layout(const std::string& s) {
  if (s == "diffusers") return TestModelLayout::diffusers;
  if (s == "single-file" || s == "single_file") return TestModelLayout::single_file;
  fail("--layout: expected diffusers or single-file, got '", s, "'");
}
Variant parse_variant(const std::string& s) {
  if (s == "schnell") return Variant::schnell;
  if (s == "dev") return Variant::dev;
  fail("--variant: expected schnell or dev, got '", s, "'");
}

uint64_t make_test_model(const std::string& dir_name, const TestModelOptions& o) {
  FLUX_CHECK(o.dtype == DType::f32 || o.dtype == DType::bf16 || o.dtype == DType::f16,
             "make-test-model: dtype expected f32, bf16 or f16, got ", dtype_name(o.dtype));
  const TokenizerDirs tok = o.tokenizers.empty() ? TokenizerDirs{} : find_tokenizer_dirs(o.tokenizers);
  const fs::path dir(dir_name);
  fs::create_directories(dir);
  const Sizes s = sizes_for(o.size);
  const bool dev = o.variant == Variant::dev;
  // One stream per component, so each is the same whatever the layout.
  Init flux_init(o.seed * 4 + 1, o.dtype), ae_init(o.seed * 4 + 2, o.dtype), clip_init(o.seed * 4 + 3, o.dtype),
      t5_init(o.seed * 4 + 4, o.dtype);
  const Named flux = flux_weights(s, dev, flux_init);
  const Named ae = ae_weights(s, ae_init);
  const Named clip = clip_weights(s, clip_init);
  const Named t5 = t5_weights(s, t5_init);
  const uint64_t total = bytes_of(flux) + bytes_of(ae) + bytes_of(clip) + bytes_of(t5);

  if (o.layout == TestModelLayout::single_file) {
    write_safetensors((dir / (dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors")).string(), flux,
                      meta(flux_config(s, dev)));
    write_safetensors((dir / "ae.safetensors").string(), ae, meta(ae_config(s)));
    write_safetensors((dir / "clip_l.safetensors").string(), clip, meta(clip_config(s)));
    write_safetensors((dir / "t5xxl.safetensors").string(), t5, meta(t5_config(s)));
  } else {
    write_json(dir / "model_index.json", {{"_class_name", "FluxPipeline"},
                                          {"_diffusers_version", "0.30.0"},
                                          {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                                          {"text_encoder", {"transformers", "CLIPTextModel"}},
                                          {"text_encoder_2", {"transformers", "T5EncoderModel"}},
                                          {"tokenizer", {"transformers", "CLIPTokenizer"}},
                                          {"tokenizer_2", {"transformers", "T5TokenizerFast"}},
                                          {"transformer", {"diffusers", "FluxTransformer2DModel"}},
                                          {"vae", {"diffusers", "AutoencoderKL"}}});
    fs::create_directories(dir / "scheduler");
    write_json(dir / "scheduler" / "scheduler_config.json", {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                                                             {"base_image_seq_len", 256},
                                                             {"base_shift", 0.5},
                                                             {"max_image_seq_len", 4096},
                                                             {"max_shift", 1.15},
                                                             {"num_train_timesteps", 1000},
                                                             {"shift", dev ? 3.0 : 1.0},
                                                             {"use_dynamic_shifting", dev}});
    fs::create_directories(dir / "transformer");
    write_json(dir / "transformer" / "config.json", flux_diffusers_config(s, dev));
    write_sharded(dir / "transformer", "diffusion_pytorch_model", flux_to_diffusers(flux, s));
    fs::create_directories(dir / "vae");
    write_json(dir / "vae" / "config.json", ae_diffusers_config(s));
    Named vae;
    for (const auto& [name, t] : ae) vae.push_back(ae_to_diffusers(name, t, static_cast<int64_t>(s.ae_mult.size())));
    write_safetensors((dir / "vae" / "diffusion_pytorch_model.safetensors").string(), vae, {{"format", "pt"}});
    fs::create_directories(dir / "text_encoder");
    write_json(dir / "text_encoder" / "config.json", clip_config(s));
    write_safetensors((dir / "text_encoder" / "model.safetensors").string(), clip, {{"format", "pt"}});
    fs::create_directories(dir / "text_encoder_2");
    write_json(dir / "text_encoder_2" / "config.json", t5_config(s));
    write_safetensors((dir / "text_encoder_2" / "model.safetensors").string(), t5, {{"format", "pt"}});
  }
  if (o.tokenizers.empty()) {
    write_test_clip_tokenizer((dir / "tokenizer").string());
    write_test_t5_tokenizer((dir / "tokenizer_2").string());
  } else {
    copy_files(tok.clip, dir / "tokenizer");
    copy_files(tok.t5, dir / "tokenizer_2");
  }
  return total;
}

}  // namespace flux
