// The FLUX.1 transformer (BFL flux/model.py Flux). Modules in flux_blocks.cc, diffusers names in flux_names.cc.
#include "models/flux.h"

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "kernels/activation.h"
#include "models/config.h"
#include "models/flux_blocks.h"
#include "models/lora_runtime.h"

namespace flux {

using transformer::DoubleStreamBlock;
using transformer::EmbedND;
using transformer::FluxWeights;
using transformer::LastLayer;
using transformer::MLPEmbedder;
using transformer::SingleStreamBlock;

FluxParams FluxParams::schnell() { return FluxParams{}; }

FluxParams FluxParams::dev() {
  FluxParams p;
  p.guidance_embed = true;
  return p;
}

namespace {

template <typename T>
void read_field(const nlohmann::json& j, const char* key, T& value, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    value = j[key].get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": field '", key, "': ", e.what());
  }
}

void read_axes(const nlohmann::json& j, const char* key, std::array<int64_t, 3>& axes, const std::string& where) {
  if (!j.contains(key)) return;
  std::vector<int64_t> v;
  read_field(j, key, v, where);
  FLUX_CHECK(v.size() == 3, where, ": field '", key, "': expected 3 values, got ", v.size());
  std::copy(v.begin(), v.end(), axes.begin());
}

// Number of blocks "<prefix>N." in the store (by BFL name).
int64_t count_blocks(const WeightStore& store, const std::string& prefix, const std::string& tail) {
  int64_t n = 0;
  while (FluxWeights::has(store, str_cat(prefix, n, ".", tail))) ++n;
  return n;
}

// The diffusers / BFL-metadata config (if any), then the shapes; guidance from the weights present.
FluxParams resolve_params(const WeightStore& store, const std::string& config_path) {
  FluxParams p;
  const auto dim = [&](const std::string& name, int d) {
    const Shape s = FluxWeights::shape_in(store, name);
    FLUX_CHECK(s.ndim() > d, "flux transformer: tensor ", name, " missing or of shape ", s.str());
    return s[d];
  };
  p.hidden_size = dim("img_in.weight", 0);
  p.in_channels = dim("img_in.weight", 1);
  p.out_channels = dim("final_layer.linear.weight", 0);
  p.vec_in_dim = dim("vector_in.in_layer.weight", 1);
  p.context_in_dim = dim("txt_in.weight", 1);
  p.depth = count_blocks(store, "double_blocks.", "img_mod.lin.weight");
  p.depth_single_blocks = count_blocks(store, "single_blocks.", "linear2.weight");
  if (p.depth > 0) {
    p.mlp_ratio = static_cast<float>(dim("double_blocks.0.img_mlp.0.weight", 0)) / static_cast<float>(p.hidden_size);
    const int64_t head_dim = dim("double_blocks.0.img_attn.norm.query_norm.scale", 0);
    FLUX_CHECK(head_dim > 0 && p.hidden_size % head_dim == 0, "flux transformer: query_norm.scale size ", head_dim,
               " does not divide the hidden size ", p.hidden_size);
    p.num_heads = p.hidden_size / head_dim;
    p.qkv_bias = FluxWeights::has(store, "double_blocks.0.img_attn.qkv.bias");
    if (head_dim != 128) {  // not a real size: split like (16, 56, 56) / 128, in even parts
      const int64_t side = head_dim * 7 / 16 / 2 * 2;
      p.axes_dim = {head_dim - 2 * side, side, side};
    }
  }
  p.guidance_embed = FluxWeights::has(store, "guidance_in.in_layer.weight");

  std::string where;
  nlohmann::json cfg;
  if (!config_path.empty()) {
    where = config_path;
    cfg = config::read_json_file(config_path);
    read_field(cfg, "in_channels", p.in_channels, where);
    p.out_channels = p.in_channels;
    read_field(cfg, "out_channels", p.out_channels, where);
    read_field(cfg, "num_layers", p.depth, where);
    read_field(cfg, "num_single_layers", p.depth_single_blocks, where);
    int64_t head_dim = p.hidden_size / p.num_heads;
    read_field(cfg, "attention_head_dim", head_dim, where);
    read_field(cfg, "num_attention_heads", p.num_heads, where);
    p.hidden_size = head_dim * p.num_heads;
    read_field(cfg, "joint_attention_dim", p.context_in_dim, where);
    read_field(cfg, "pooled_projection_dim", p.vec_in_dim, where);
    read_axes(cfg, "axes_dims_rope", p.axes_dim, where);
  } else if (store.metadata().count("config")) {
    where = "__metadata__ config of " + store.files().front();
    try {
      cfg = nlohmann::json::parse(store.metadata().at("config"));
    } catch (const nlohmann::json::exception& e) {
      fail(where, ": invalid JSON: ", e.what());
    }
    const std::pair<const char*, int64_t*> ints[] = {{"in_channels", &p.in_channels},
                                                     {"out_channels", &p.out_channels},
                                                     {"vec_in_dim", &p.vec_in_dim},
                                                     {"context_in_dim", &p.context_in_dim},
                                                     {"hidden_size", &p.hidden_size},
                                                     {"num_heads", &p.num_heads},
                                                     {"depth", &p.depth},
                                                     {"depth_single_blocks", &p.depth_single_blocks}};
    for (const auto& [key, value] : ints) read_field(cfg, key, *value, where);
    read_field(cfg, "mlp_ratio", p.mlp_ratio, where);
    read_field(cfg, "theta", p.theta, where);
    read_field(cfg, "qkv_bias", p.qkv_bias, where);
    read_axes(cfg, "axes_dim", p.axes_dim, where);
  }
  FLUX_CHECK(p.num_heads > 0 && p.hidden_size % p.num_heads == 0, "flux transformer: hidden size ", p.hidden_size,
             " is not a multiple of num_heads ", p.num_heads);
  const int64_t head_dim = p.hidden_size / p.num_heads;
  FLUX_CHECK(p.axes_dim[0] + p.axes_dim[1] + p.axes_dim[2] == head_dim && head_dim % 2 == 0,
             "flux transformer: axes_dim ", p.axes_dim[0], "+", p.axes_dim[1], "+", p.axes_dim[2],
             " must equal the (even) head dim ", head_dim);
  return p;
}

// [1, n, c] -> [n, c]; [n, c] unchanged; anything else is an error naming `what`.
Tensor rows_of(const Tensor& t, const char* what, int64_t cols) {
  Tensor r = t.ndim() == 3 && t.dim(0) == 1 ? t.reshape({t.dim(1), t.dim(2)}) : t;
  FLUX_CHECK(r.dtype() == DType::f32 && r.ndim() == 2 && r.dim(1) == cols, "Flux.forward: ", what,
             ": expected f32 [n, ", cols, "], got ", t.describe());
  return r;
}

}  // namespace

FluxParams FluxParams::resolve(const WeightStore& store, const std::string& config_path) {
  return resolve_params(store, config_path);
}

struct Flux::Impl {
  nn::Linear img_in;  // [hidden, in_channels]
  MLPEmbedder time_in, vector_in, guidance_in;
  nn::Linear txt_in;  // [hidden, context_in_dim]
  EmbedND pe_embedder;
  std::vector<DoubleStreamBlock> double_blocks;
  std::vector<SingleStreamBlock> single_blocks;
  LastLayer final_layer;
  std::vector<LoraSlot> slots;  // by nn::Linear::lora_slot
};

// The blocks' Workspace kept between forward calls, shared by copies of a Flux. A forward that finds it in use
// (a concurrent call) makes a Workspace of its own.
struct Flux::Scratch {
  std::mutex mutex;
  std::unique_ptr<transformer::Workspace> ws;
};

size_t Flux::scratch_bytes() const {
  if (!scratch_) return 0;
  std::lock_guard lock(scratch_->mutex);
  return scratch_->ws ? scratch_->ws->bytes() : 0;
}

void Flux::release_scratch() const {
  if (!scratch_) return;
  std::lock_guard lock(scratch_->mutex);
  scratch_->ws.reset();
}

void Flux::strip_checkpoint_prefix(WeightStore& store) {
  if (!store.contains("img_in.weight") && !store.contains("x_embedder.weight"))
    store.strip_prefix("model.diffusion_model.");
}

Flux Flux::load(WeightStore& store, const FluxParams& params, kernels::WeightMode mode, const LoraStack& merged) {
  strip_checkpoint_prefix(store);
  const FluxParams& p = params;
  FLUX_CHECK(p.num_heads > 0 && p.hidden_size % p.num_heads == 0, "flux transformer: hidden size ", p.hidden_size,
             " is not a multiple of num_heads ", p.num_heads);
  FluxWeights w(store, FluxWeights::is_diffusers(store), mode);
  if (!merged.empty()) w.set_merged_loras(&merged);
  auto impl = std::make_shared<Impl>();
  const int64_t hidden = p.hidden_size;
  impl->img_in = w.linear("img_in.", p.in_channels, hidden);
  impl->time_in = MLPEmbedder::bind(w, "time_in.", 256, hidden);
  impl->vector_in = MLPEmbedder::bind(w, "vector_in.", p.vec_in_dim, hidden);
  if (p.guidance_embed) impl->guidance_in = MLPEmbedder::bind(w, "guidance_in.", 256, hidden);
  impl->txt_in = w.linear("txt_in.", p.context_in_dim, hidden);
  impl->pe_embedder = EmbedND{p.axes_dim, p.theta};
  for (int64_t i = 0; i < p.depth; ++i) {
    impl->double_blocks.push_back(DoubleStreamBlock::bind(w, str_cat("double_blocks.", i, "."), p));
  }
  for (int64_t i = 0; i < p.depth_single_blocks; ++i) {
    impl->single_blocks.push_back(SingleStreamBlock::bind(w, str_cat("single_blocks.", i, "."), p));
  }
  impl->final_layer = LastLayer::bind(w, "final_layer.", hidden, p.out_channels);
  impl->slots = w.slots();
  const auto files = store.files();
  store.finish(str_cat("flux transformer (", files.empty() ? std::string("no file") : files.front(),
                       files.size() > 1 ? " ..." : "", ")"));
  Flux f;
  f.params_ = p;
  f.impl_ = std::move(impl);
  f.scratch_ = std::make_shared<Scratch>();
  return f;
}

Tensor Flux::forward(const Tensor& img_in, const Tensor& img_ids_in, const Tensor& txt_in, const Tensor& txt_ids_in,
                     float t, const Tensor& y_in, float guidance, std::stop_token stop, const TensorTap& tap,
                     const LoraSet* loras) const {
  FLUX_CHECK(impl_ != nullptr, "Flux.forward: model not loaded");
  const FluxParams& p = params_;
  const Impl& m = *impl_;
  const Tensor img = rows_of(img_in, "img", p.in_channels);
  const Tensor txt = rows_of(txt_in, "txt", p.context_in_dim);
  const Tensor img_ids = rows_of(img_ids_in, "img_ids", 3);
  const Tensor txt_ids = rows_of(txt_ids_in, "txt_ids", 3);
  const int64_t n_img = img.dim(0), n_txt = txt.dim(0), hidden = p.hidden_size;
  FLUX_CHECK(img_ids.dim(0) == n_img && txt_ids.dim(0) == n_txt, "Flux.forward: ids rows (img ", img_ids.dim(0),
             ", txt ", txt_ids.dim(0), ") must match img ", n_img, " and txt ", n_txt);
  FLUX_CHECK(y_in.dtype() == DType::f32 && y_in.numel() == p.vec_in_dim, "Flux.forward: y: expected f32 [",
             p.vec_in_dim, "], got ", y_in.describe());
  const auto emit = [&](const std::string& name, const Tensor& value) {
    if (tap) tap(name, value);
  };

  // vec = time_in(t) [+ guidance_in(g)] + vector_in(y): [1, hidden]
  Tensor vec = m.time_in.forward(transformer::timestep_embedding(t, 256), loras);
  if (p.guidance_embed)
    vec = nn::add(vec, m.guidance_in.forward(transformer::timestep_embedding(guidance, 256), loras));
  vec = nn::add(vec, m.vector_in.forward(y_in.reshape({1, p.vec_in_dim}), loras));
  emit("vec", vec);
  const Tensor silu_vec = nn::silu(vec.clone());  // every Modulation / the final layer take silu(vec)

  std::unique_lock lock(scratch_->mutex, std::try_to_lock);
  std::optional<transformer::Workspace> own;
  if (lock.owns_lock() && !(scratch_->ws && scratch_->ws->fits(n_txt, n_img))) {
    scratch_->ws.reset();  // the old one first: both together may not fit
    scratch_->ws = std::make_unique<transformer::Workspace>(p, n_txt, n_img);
  }
  transformer::Workspace& ws = lock.owns_lock() ? *scratch_->ws : own.emplace(p, n_txt, n_img);
  // This call's adapters, for the blocks' products; cleared on the way out (the workspace outlives the call).
  struct LorasInScope {
    transformer::Workspace& ws;
    ~LorasInScope() { ws.loras = nullptr; }
  } loras_in_scope{ws};
  ws.loras = loras;

  // x = cat(txt_in(txt), img_in(img)): [n_txt + n_img, hidden]
  Tensor& x = ws.x;
  m.txt_in.op.forward(txt.data<float>(), n_txt, x.mut<float>());
  apply_lora(loras, m.txt_in, txt.data<float>(), n_txt, x.mut<float>());
  m.img_in.op.forward(img.data<float>(), n_img, x.mut<float>() + n_txt * hidden);
  apply_lora(loras, m.img_in, img.data<float>(), n_img, x.mut<float>() + n_txt * hidden);
  Tensor ids = Tensor::empty(DType::f32, {n_txt + n_img, 3});
  std::copy_n(txt_ids.data<float>(), n_txt * 3, ids.mut<float>());
  std::copy_n(img_ids.data<float>(), n_img * 3, ids.mut<float>() + n_txt * 3);
  const transformer::PositionEmbedding pe = m.pe_embedder.forward(ids);
  emit("txt_in", x.slice_rows(0, n_txt));
  emit("img_in", x.slice_rows(n_txt, n_txt + n_img));

  for (size_t i = 0; i < m.double_blocks.size(); ++i) {
    if (stop.stop_requested()) throw Cancelled();
    m.double_blocks[i].forward(x.mut<float>(), silu_vec, pe, ws);
    if (tap) {
      tap(str_cat("double_blocks.", i, ".txt"), x.slice_rows(0, n_txt));
      tap(str_cat("double_blocks.", i, ".img"), x.slice_rows(n_txt, n_txt + n_img));
    }
  }
  for (size_t i = 0; i < m.single_blocks.size(); ++i) {
    if (stop.stop_requested()) throw Cancelled();
    m.single_blocks[i].forward(x.mut<float>(), silu_vec, pe, ws);
    if (tap) tap(str_cat("single_blocks.", i), x);
  }
  if (stop.stop_requested()) throw Cancelled();
  // [n_img, out_channels]
  Tensor out = m.final_layer.forward(x.data<float>() + n_txt * hidden, n_img, silu_vec, ws);
  emit("final", out);
  return out;
}

const std::vector<LoraSlot>& Flux::lora_slots() const {
  FLUX_CHECK(impl_ != nullptr, "Flux: model not loaded");
  return impl_->slots;
}

}  // namespace flux
