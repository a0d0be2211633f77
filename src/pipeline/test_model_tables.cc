// make-test-model's parameter tables: every component's parameters in BFL / HF names with their shapes and init
// scales, per size, the diffusers renaming (as diffusers' scripts/convert_flux_to_diffusers.py and
// single_file_utils.convert_ldm_vae_checkpoint map them) and the configs each layout carries.
#include "pipeline/test_model_tables.h"

#include <cmath>
#include <map>

#include "base/error.h"

namespace flux::test_model {

Sizes sizes_for(TestModelSize s) {
  switch (s) {
    case TestModelSize::tiny:
      return {64, 4, 2, 2, {4, 6, 6}, 32, 128, 2, 4, 32, 16, 4, 64, 2, 32, {1, 2, 2, 2}, 1};
    case TestModelSize::small:
      return {128, 4, 2, 4, {8, 12, 12}, 64, 256, 2, 4, 64, 16, 4, 128, 2, 32, {1, 2, 2, 2}, 1};
    case TestModelSize::medium:
      return {1024, 16, 8, 20, {16, 24, 24}, 128, 512, 4, 4, 256, 32, 8, 512, 4, 64, {1, 2, 4, 4}, 1};
    case TestModelSize::full:  // BFL flux/util.py configs["flux-schnell"], HF t5-v1_1-xxl,
                               // openai/clip-vit-large-patch14
      return {3072, 24, 19, 38, {16, 56, 56}, 768, 3072, 12, 12, 4096, 64, 64, 10240, 24, 128, {1, 2, 4, 4}, 2};
  }
  fail("unknown test model size");
}

namespace {

// Adds prefix.weight [out, in] (std 0.5/sqrt(in): activations stay O(1)) and prefix.bias [out].
void linear(Params& out, const std::string& prefix, int64_t in, int64_t o, bool bias = true) {
  out.push_back({prefix + ".weight", Shape{o, in}, 0.5f / std::sqrt(static_cast<float>(in))});
  if (bias) out.push_back({prefix + ".bias", Shape{o}, 0.02f});
}
void conv(Params& out, const std::string& prefix, int64_t in, int64_t o, int64_t k) {
  out.push_back({prefix + ".weight", Shape{o, in, k, k}, 0.8f / std::sqrt(static_cast<float>(in * k * k))});
  out.push_back({prefix + ".bias", Shape{o}, 0.02f});
}
void norm(Params& out, const std::string& prefix, int64_t dim, bool bias = true) {
  out.push_back({prefix + ".weight", Shape{dim}, 0.0f, 1.0f});
  if (bias) out.push_back({prefix + ".bias", Shape{dim}, 0.0f, 0.0f});
}
void constant(Params& out, const std::string& name, int64_t dim, float value) {
  out.push_back({name, Shape{dim}, 0.0f, value});
}

}  // namespace

// ---- transformer (BFL names) ----
Params flux_weights(const Sizes& s, bool dev) {
  Params w;
  const int64_t h = s.hidden, hd = h / s.heads, mlp = 4 * h;
  linear(w, "img_in", 64, h);
  linear(w, "time_in.in_layer", 256, h);
  linear(w, "time_in.out_layer", h, h);
  linear(w, "vector_in.in_layer", s.clip_hidden, h);
  linear(w, "vector_in.out_layer", h, h);
  if (dev) {
    linear(w, "guidance_in.in_layer", 256, h);
    linear(w, "guidance_in.out_layer", h, h);
  }
  linear(w, "txt_in", s.t5_d, h);
  for (int64_t i = 0; i < s.depth; ++i) {
    const std::string p = "double_blocks." + std::to_string(i) + ".";
    for (const char* stream : {"img", "txt"}) {
      const std::string q = p + stream;
      linear(w, q + "_mod.lin", h, 6 * h);
      linear(w, q + "_attn.qkv", h, 3 * h);
      constant(w, q + "_attn.norm.query_norm.scale", hd, 1.0f);
      constant(w, q + "_attn.norm.key_norm.scale", hd, 1.0f);
      linear(w, q + "_attn.proj", h, h);
      linear(w, q + "_mlp.0", h, mlp);
      linear(w, q + "_mlp.2", mlp, h);
    }
  }
  for (int64_t i = 0; i < s.single_depth; ++i) {
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    linear(w, p + "linear1", h, 3 * h + mlp);
    linear(w, p + "linear2", h + mlp, h);
    constant(w, p + "norm.query_norm.scale", hd, 1.0f);
    constant(w, p + "norm.key_norm.scale", hd, 1.0f);
    linear(w, p + "modulation.lin", h, 3 * h);
  }
  linear(w, "final_layer.adaLN_modulation.1", h, 2 * h);
  linear(w, "final_layer.linear", h, 64);
  return w;
}

// A component's output tensors, each one whole parameter under its own name (dtype set later).
std::vector<OutTensor> as_stored(const Params& params) {
  std::vector<OutTensor> out;
  for (size_t i = 0; i < params.size(); ++i) out.push_back(test_model::whole(params, i, params[i].name, DType::f32));
  return out;
}

std::vector<OutTensor> flux_to_diffusers(const Params& bfl, const Sizes& s) {
  std::map<std::string, size_t> m;
  for (size_t i = 0; i < bfl.size(); ++i) m[bfl[i].name] = i;
  std::vector<OutTensor> out;
  const int64_t h = s.hidden;
  auto add = [&](const std::string& to, const std::string& from, std::vector<Piece> pieces = {}) {
    const size_t i = m.at(from);
    if (pieces.empty()) pieces = {{i, 0, bfl[i].n_rows()}};
    int64_t rows = 0;
    for (const Piece& p : pieces) rows += p.end - p.begin;
    std::vector<int64_t> dims = bfl[i].shape.to_vector();
    dims[0] = rows;
    out.push_back({to, Shape(dims), DType::f32, pieces});
  };
  auto put = [&](const std::string& to, const std::string& from) {
    for (const char* suffix : {".weight", ".bias"})
      if (m.count(from + suffix)) add(to + suffix, from + suffix);
  };
  auto split = [&](const std::string& from, const std::vector<std::pair<std::string, int64_t>>& parts) {
    for (const char* suffix : {".weight", ".bias"}) {
      if (!m.count(from + suffix)) continue;
      int64_t at = 0;
      for (const auto& [to, n] : parts) {
        add(to + suffix, from + suffix, {{m.at(from + suffix), at, at + n}});
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
    add(d + "attn.norm_q.weight", b + "img_attn.norm.query_norm.scale");
    add(d + "attn.norm_k.weight", b + "img_attn.norm.key_norm.scale");
    add(d + "attn.norm_added_q.weight", b + "txt_attn.norm.query_norm.scale");
    add(d + "attn.norm_added_k.weight", b + "txt_attn.norm.key_norm.scale");
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
    add(d + "attn.norm_q.weight", b + "norm.query_norm.scale");
    add(d + "attn.norm_k.weight", b + "norm.key_norm.scale");
    put(d + "proj_out", b + "linear2");
  }
  put("proj_out", "final_layer.linear");
  // BFL (shift, scale) -> diffusers (scale, shift).
  for (const char* suffix : {".weight", ".bias"}) {
    const size_t i = m.at(std::string("final_layer.adaLN_modulation.1") + suffix);
    add(std::string("norm_out.linear") + suffix, bfl[i].name, {{i, h, 2 * h}, {i, 0, h}});
  }
  return out;
}

nlohmann::json flux_config(const Sizes& s, bool dev) {
  return {{"in_channels", 64},        {"out_channels", 64},      {"vec_in_dim", s.clip_hidden},
          {"context_in_dim", s.t5_d}, {"hidden_size", s.hidden}, {"mlp_ratio", 4.0},
          {"num_heads", s.heads},     {"depth", s.depth},        {"depth_single_blocks", s.single_depth},
          {"axes_dim", s.axes},       {"theta", 10000},          {"qkv_bias", true},
          {"guidance_embed", dev}};
}
nlohmann::json flux_diffusers_config(const Sizes& s, bool dev) {
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
namespace {

void resnet(Params& w, const std::string& p, int64_t in, int64_t out) {
  norm(w, p + "norm1", in);
  conv(w, p + "conv1", in, out, 3);
  norm(w, p + "norm2", out);
  conv(w, p + "conv2", out, out, 3);
  if (in != out) conv(w, p + "nin_shortcut", in, out, 1);
}
void attn(Params& w, const std::string& p, int64_t c) {
  norm(w, p + "norm", c);
  for (const char* n : {"q", "k", "v", "proj_out"}) conv(w, p + n, c, c, 1);
}

}  // namespace

Params ae_weights(const Sizes& s) {
  Params w;
  const int64_t n = static_cast<int64_t>(s.ae_mult.size()), ch = s.ae_ch;
  // Encoder
  conv(w, "encoder.conv_in", 3, ch, 3);
  int64_t block_in = ch;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block_out = ch * s.ae_mult[static_cast<size_t>(i)];
    for (int64_t j = 0; j < s.ae_res; ++j) {
      resnet(w, "encoder.down." + std::to_string(i) + ".block." + std::to_string(j) + ".", block_in, block_out);
      block_in = block_out;
    }
    if (i != n - 1) conv(w, "encoder.down." + std::to_string(i) + ".downsample.conv", block_in, block_in, 3);
  }
  resnet(w, "encoder.mid.block_1.", block_in, block_in);
  attn(w, "encoder.mid.attn_1.", block_in);
  resnet(w, "encoder.mid.block_2.", block_in, block_in);
  norm(w, "encoder.norm_out", block_in);
  conv(w, "encoder.conv_out", block_in, 32, 3);
  // Decoder
  block_in = ch * s.ae_mult.back();
  conv(w, "decoder.conv_in", 16, block_in, 3);
  resnet(w, "decoder.mid.block_1.", block_in, block_in);
  attn(w, "decoder.mid.attn_1.", block_in);
  resnet(w, "decoder.mid.block_2.", block_in, block_in);
  for (int64_t i = n - 1; i >= 0; --i) {
    const int64_t block_out = ch * s.ae_mult[static_cast<size_t>(i)];
    for (int64_t j = 0; j <= s.ae_res; ++j) {
      resnet(w, "decoder.up." + std::to_string(i) + ".block." + std::to_string(j) + ".", block_in, block_out);
      block_in = block_out;
    }
    if (i != 0) conv(w, "decoder.up." + std::to_string(i) + ".upsample.conv", block_in, block_in, 3);
  }
  norm(w, "decoder.norm_out", block_in);
  conv(w, "decoder.conv_out", block_in, 3, 3);
  return w;
}

namespace {
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}
}  // namespace

// One BFL AE name -> diffusers AutoencoderKL name; 1x1 attention convs become [C, C] linears.
OutTensor ae_to_diffusers(const OutTensor& t, int64_t n_levels) {
  std::string d = t.name;
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
  OutTensor out = t;
  if (d.find(".mid.attn_1.") != std::string::npos) {
    d = replace_all(d, ".mid.attn_1.norm.", ".mid_block.attentions.0.group_norm.");
    d = replace_all(d, ".mid.attn_1.q.", ".mid_block.attentions.0.to_q.");
    d = replace_all(d, ".mid.attn_1.k.", ".mid_block.attentions.0.to_k.");
    d = replace_all(d, ".mid.attn_1.v.", ".mid_block.attentions.0.to_v.");
    d = replace_all(d, ".mid.attn_1.proj_out.", ".mid_block.attentions.0.to_out.0.");
    if (t.shape.ndim() == 4) out.shape = Shape{t.shape[0], t.shape[1]};
  }
  out.name = d;
  return out;
}

nlohmann::json ae_config(const Sizes& s) {
  return {{"resolution", 256}, {"in_channels", 3},       {"ch", s.ae_ch},
          {"out_ch", 3},       {"ch_mult", s.ae_mult},   {"num_res_blocks", s.ae_res},
          {"z_channels", 16},  {"scale_factor", 0.3611}, {"shift_factor", 0.1159}};
}
nlohmann::json ae_diffusers_config(const Sizes& s) {
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
Params clip_weights(const Sizes& s) {
  Params w;
  const int64_t h = s.clip_hidden;
  w.push_back({"text_model.embeddings.token_embedding.weight", Shape{49408, h}, 0.02f});
  w.push_back({"text_model.embeddings.position_embedding.weight", Shape{77, h}, 0.01f});
  for (int64_t i = 0; i < s.clip_layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i) + ".";
    norm(w, p + "layer_norm1", h);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(w, p + "self_attn." + n, h, h);
    norm(w, p + "layer_norm2", h);
    linear(w, p + "mlp.fc1", h, s.clip_inter);
    linear(w, p + "mlp.fc2", s.clip_inter, h);
  }
  norm(w, "text_model.final_layer_norm", h);
  return w;
}
nlohmann::json clip_config(const Sizes& s) {
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

Params t5_weights(const Sizes& s) {
  Params w;
  const int64_t d = s.t5_d, inner = s.t5_kv * s.t5_heads;
  w.push_back({"shared.weight", Shape{32128, d}, 1.0f});
  for (int64_t i = 0; i < s.t5_layers; ++i) {
    const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
    linear(w, p + "0.SelfAttention.q", d, inner, false);
    linear(w, p + "0.SelfAttention.k", d, inner, false);
    linear(w, p + "0.SelfAttention.v", d, inner, false);
    linear(w, p + "0.SelfAttention.o", inner, d, false);
    if (i == 0) w.push_back({p + "0.SelfAttention.relative_attention_bias.weight", Shape{32, s.t5_heads}, 0.5f});
    norm(w, p + "0.layer_norm", d, false);
    linear(w, p + "1.DenseReluDense.wi_0", d, s.t5_ff, false);
    linear(w, p + "1.DenseReluDense.wi_1", d, s.t5_ff, false);
    linear(w, p + "1.DenseReluDense.wo", s.t5_ff, d, false);
    norm(w, p + "1.layer_norm", d, false);
  }
  norm(w, "encoder.final_layer_norm", d, false);
  return w;
}
nlohmann::json t5_config(const Sizes& s) {
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

}  // namespace flux::test_model
