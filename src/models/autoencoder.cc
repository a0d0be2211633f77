// The FLUX autoencoder (BFL flux/modules/autoencoder.py): Encoder and Decoder of ResnetBlocks, one AttnBlock in
// the middle, GroupNorm(32, eps 1e-6) and swish. Activations are one image, F32 [C, H, W].
#include "models/autoencoder.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/thread_pool.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/conv.h"
#include "models/nn.h"

namespace flux {
namespace {

constexpr int64_t kGroups = 32;
constexpr float kEps = 1e-6f;

// ---- names: BFL -> diffusers AutoencoderKL (diffusers' convert_ldm_vae_checkpoint, inverted) ----
// Placeholders: {i}, {j} copy an index; {r} is a decoder level, numbered the other way round in diffusers
// (up_blocks.0 is BFL's up.{n-1}); {s} is "encoder" or "decoder". A pattern matches a prefix of the name.
struct AeRule {
  const char* bfl;
  const char* diffusers;
};
constexpr AeRule kAeNames[] = {
    {"encoder.down.{i}.block.{j}.nin_shortcut.", "encoder.down_blocks.{i}.resnets.{j}.conv_shortcut."},
    {"encoder.down.{i}.block.{j}.", "encoder.down_blocks.{i}.resnets.{j}."},
    {"encoder.down.{i}.downsample.conv.", "encoder.down_blocks.{i}.downsamplers.0.conv."},
    {"decoder.up.{r}.block.{j}.nin_shortcut.", "decoder.up_blocks.{r}.resnets.{j}.conv_shortcut."},
    {"decoder.up.{r}.block.{j}.", "decoder.up_blocks.{r}.resnets.{j}."},
    {"decoder.up.{r}.upsample.conv.", "decoder.up_blocks.{r}.upsamplers.0.conv."},
    {"{s}.mid.block_1.", "{s}.mid_block.resnets.0."},
    {"{s}.mid.block_2.", "{s}.mid_block.resnets.1."},
    {"{s}.mid.attn_1.norm.", "{s}.mid_block.attentions.0.group_norm."},
    {"{s}.mid.attn_1.q.", "{s}.mid_block.attentions.0.to_q."},
    {"{s}.mid.attn_1.k.", "{s}.mid_block.attentions.0.to_k."},
    {"{s}.mid.attn_1.v.", "{s}.mid_block.attentions.0.to_v."},
    {"{s}.mid.attn_1.proj_out.", "{s}.mid_block.attentions.0.to_out.0."},
    {"{s}.norm_out.", "{s}.conv_norm_out."},
};

// Matches `pattern` against the start of `name`; fills the captures and returns the rest of the name.
std::optional<std::string> match_rule(const std::string& pattern, const std::string& name, std::string caps[128]) {
  size_t p = 0, n = 0;
  while (p < pattern.size()) {
    if (pattern[p] == '{') {
      const char key = pattern[p + 1];
      p += 3;
      const size_t start = n;
      while (n < name.size() && (key == 's' ? std::isalpha(static_cast<unsigned char>(name[n])) != 0
                                            : std::isdigit(static_cast<unsigned char>(name[n])) != 0)) {
        ++n;
      }
      if (n == start) return std::nullopt;
      caps[static_cast<unsigned char>(key)] = name.substr(start, n - start);
    } else {
      if (n >= name.size() || name[n] != pattern[p]) return std::nullopt;
      ++p, ++n;
    }
  }
  return name.substr(n);
}

std::string ae_diffusers_name(const std::string& bfl, int64_t n_levels) {
  for (const AeRule& rule : kAeNames) {
    std::string caps[128];
    const std::optional<std::string> rest = match_rule(rule.bfl, bfl, caps);
    if (!rest) continue;
    std::string out;
    for (const char* c = rule.diffusers; *c; ++c) {
      if (*c != '{') {
        out += *c;
        continue;
      }
      const char key = c[1];
      c += 2;
      out += key == 'r' ? std::to_string(n_levels - 1 - std::stoll(caps['r'])) : caps[static_cast<unsigned char>(key)];
    }
    return out + *rest;
  }
  return bfl;  // conv_in, conv_out: same names
}

// Binds autoencoder weights by BFL name from BFL or diffusers files.
class AeWeights {
 public:
  AeWeights(WeightStore& store, int64_t n_levels) : store_(store), n_levels_(n_levels) {
    diffusers_ = store.contains("decoder.conv_norm_out.weight") || store.contains("encoder.conv_norm_out.weight");
  }
  std::string name(const std::string& bfl) const { return diffusers_ ? ae_diffusers_name(bfl, n_levels_) : bfl; }

  nn::Conv2d conv(const std::string& prefix, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                  int64_t pad = -1) {
    return nn::Conv2d::bind(store_, name(prefix), in, out, kernel, stride, pad);
  }
  nn::GroupNorm norm(const std::string& prefix, int64_t channels) {
    return nn::GroupNorm::bind(store_, name(prefix), channels, kGroups, kEps);
  }
  // A 1x1 convolution over C channels ([C, C, 1, 1]; diffusers stores [C, C]) as a Linear on [HW, C] rows.
  nn::Linear conv1x1_as_linear(const std::string& prefix, int64_t channels) {
    const std::string n = name(prefix);
    Tensor w = diffusers_ ? store_.require_f32(n + "weight", {channels, channels})
                          : store_.require_f32(n + "weight", {channels, channels, 1, 1});
    Tensor b = store_.require_f32(n + "bias", {channels});
    nn::Linear l;
    if (w.defined() && b.defined()) l.op = kernels::Linear(w.reshape({channels, channels}), b);
    return l;
  }

 private:
  WeightStore& store_;
  int64_t n_levels_ = 0;
  bool diffusers_ = false;
};

// ---- helpers on [C, H, W] ----

Tensor swish(Tensor x) { return nn::silu(std::move(x)); }

// x += y (same shape), x owned.
void add_into(Tensor& x, const Tensor& y) {
  FLUX_CHECK(x.shape() == y.shape(), "autoencoder: residual shapes differ: ", x.describe(), " vs ", y.describe());
  float* a = x.mut<float>();
  const float* b = y.data<float>();
  parallel_for(
      x.numel(), [&](int64_t s, int64_t e) { kernels::add(a + s, b + s, a + s, e - s); }, 1 << 14);
}

// [rows, cols] -> [cols, rows]
Tensor transpose(const float* x, int64_t rows, int64_t cols) {
  Tensor y = Tensor::empty(DType::f32, {cols, rows});
  float* out = y.mut<float>();
  constexpr int64_t kTile = 32;
  parallel_for((rows + kTile - 1) / kTile, [&](int64_t b, int64_t e) {
    for (int64_t r0 = b * kTile; r0 < std::min(rows, e * kTile); r0 += kTile) {
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r) {
          for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) out[c * rows + r] = x[r * cols + c];
        }
      }
    }
  });
  return y;
}

// ---- modules ----

struct ResnetBlock {
  nn::GroupNorm norm1, norm2;
  nn::Conv2d conv1, conv2;
  nn::Conv2d nin_shortcut;  // 1x1, only when in != out
  bool has_shortcut = false;

  static ResnetBlock bind(AeWeights& w, const std::string& prefix, int64_t in, int64_t out) {
    ResnetBlock b;
    b.norm1 = w.norm(prefix + "norm1.", in);
    b.conv1 = w.conv(prefix + "conv1.", in, out, 3);
    b.norm2 = w.norm(prefix + "norm2.", out);
    b.conv2 = w.conv(prefix + "conv2.", out, out, 3);
    b.has_shortcut = in != out;
    if (b.has_shortcut) b.nin_shortcut = w.conv(prefix + "nin_shortcut.", in, out, 1);
    return b;
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = conv1.forward(swish(norm1.forward(x)));
    h = conv2.forward(swish(norm2.forward(h)));
    add_into(h, has_shortcut ? nin_shortcut.forward(x) : x);  // x + h
    return h;
  }
};

// Single-head self-attention over the H*W positions, C channels.
struct AttnBlock {
  nn::GroupNorm norm;
  nn::Linear q, k, v, proj_out;
  int64_t channels = 0;

  static AttnBlock bind(AeWeights& w, const std::string& prefix, int64_t channels) {
    return {w.norm(prefix + "norm.", channels),
            w.conv1x1_as_linear(prefix + "q.", channels),
            w.conv1x1_as_linear(prefix + "k.", channels),
            w.conv1x1_as_linear(prefix + "v.", channels),
            w.conv1x1_as_linear(prefix + "proj_out.", channels),
            channels};
  }
  Tensor forward(const Tensor& x) const {
    const int64_t hw = x.dim(1) * x.dim(2);
    const Tensor h = transpose(norm.forward(x).data<float>(), channels, hw);  // [C, HW] -> [HW, C]
    const Tensor hq = q.forward(h), hk = k.forward(h), hv = v.forward(h);     // [HW, C] = [1 head, HW, C]
    Tensor a = Tensor::empty(DType::f32, {hw, channels});
    kernels::AttentionParams p;
    p.n_heads = 1;
    p.len_q = p.len_k = hw;
    p.head_dim = channels;
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(channels)));
    kernels::attention(p, hq.data<float>(), hk.data<float>(), hv.data<float>(), a.mut<float>());
    Tensor out = transpose(proj_out.forward(a).data<float>(), hw, channels).reshape(x.shape());
    add_into(out, x);  // x + proj_out(attn)
    return out;
  }
};

// Pads right and bottom by one, then a 3x3 stride-2 convolution.
struct Downsample {
  nn::Conv2d conv;
  static Downsample bind(AeWeights& w, const std::string& prefix, int64_t channels) {
    Downsample d{w.conv(prefix + "conv.", channels, channels, 3, 2, 0)};
    d.conv.pad_bottom = d.conv.pad_right = 1;
    return d;
  }
  Tensor forward(const Tensor& x) const { return conv.forward(x); }
};

// Nearest-neighbour x2, then a 3x3 convolution.
struct Upsample {
  nn::Conv2d conv;
  static Upsample bind(AeWeights& w, const std::string& prefix, int64_t channels) {
    return {w.conv(prefix + "conv.", channels, channels, 3)};
  }
  Tensor forward(const Tensor& x) const {
    Tensor up = Tensor::empty(DType::f32, {x.dim(0), 2 * x.dim(1), 2 * x.dim(2)});
    kernels::upsample_nearest2x(x.data<float>(), up.mut<float>(), x.dim(0), x.dim(1), x.dim(2));
    return conv.forward(up);
  }
};

struct Mid {
  ResnetBlock block_1;
  AttnBlock attn_1;
  ResnetBlock block_2;
  static Mid bind(AeWeights& w, const std::string& prefix, int64_t channels) {
    return {ResnetBlock::bind(w, prefix + "block_1.", channels, channels),
            AttnBlock::bind(w, prefix + "attn_1.", channels),
            ResnetBlock::bind(w, prefix + "block_2.", channels, channels)};
  }
  Tensor forward(const Tensor& x) const { return block_2.forward(attn_1.forward(block_1.forward(x))); }
};

struct Level {
  std::vector<ResnetBlock> block;
  std::optional<Downsample> downsample;
  std::optional<Upsample> upsample;
};

struct Encoder {
  nn::Conv2d conv_in;
  std::vector<Level> down;
  std::optional<Mid> mid;
  nn::GroupNorm norm_out;
  nn::Conv2d conv_out;

  static Encoder bind(AeWeights& w, const AutoEncoderParams& p) {
    Encoder e;
    const auto n_levels = static_cast<int64_t>(p.ch_mult.size());
    e.conv_in = w.conv("encoder.conv_in.", p.in_channels, p.ch, 3);
    int64_t block_in = p.ch;
    for (int64_t i = 0; i < n_levels; ++i) {
      Level level;
      const int64_t block_out = p.ch * p.ch_mult[static_cast<size_t>(i)];
      for (int64_t j = 0; j < p.num_res_blocks; ++j) {
        level.block.push_back(
            ResnetBlock::bind(w, str_cat("encoder.down.", i, ".block.", j, "."), block_in, block_out));
        block_in = block_out;
      }
      if (i != n_levels - 1)
        level.downsample = Downsample::bind(w, str_cat("encoder.down.", i, ".downsample."), block_in);
      e.down.push_back(std::move(level));
    }
    e.mid = Mid::bind(w, "encoder.mid.", block_in);
    e.norm_out = w.norm("encoder.norm_out.", block_in);
    e.conv_out = w.conv("encoder.conv_out.", block_in, 2 * p.z_channels, 3);
    return e;
  }
  // x: [in_channels, H, W] -> moments [2 z_channels, H/8, W/8]
  Tensor forward(const Tensor& x) const {
    Tensor h = conv_in.forward(x);
    for (const Level& level : down) {
      for (const ResnetBlock& b : level.block) h = b.forward(h);
      if (level.downsample) h = level.downsample->forward(h);
    }
    h = mid->forward(h);
    return conv_out.forward(swish(norm_out.forward(h)));
  }
};

struct Decoder {
  nn::Conv2d conv_in;
  std::optional<Mid> mid;
  std::vector<Level> up;  // up[0] is the full-resolution level; run from up[n-1] down to up[0]
  nn::GroupNorm norm_out;
  nn::Conv2d conv_out;

  static Decoder bind(AeWeights& w, const AutoEncoderParams& p) {
    Decoder d;
    const auto n_levels = static_cast<int64_t>(p.ch_mult.size());
    int64_t block_in = p.ch * p.ch_mult.back();
    d.conv_in = w.conv("decoder.conv_in.", p.z_channels, block_in, 3);
    d.mid = Mid::bind(w, "decoder.mid.", block_in);
    d.up.resize(static_cast<size_t>(n_levels));
    for (int64_t i = n_levels - 1; i >= 0; --i) {
      Level& level = d.up[static_cast<size_t>(i)];
      const int64_t block_out = p.ch * p.ch_mult[static_cast<size_t>(i)];
      for (int64_t j = 0; j <= p.num_res_blocks; ++j) {
        level.block.push_back(ResnetBlock::bind(w, str_cat("decoder.up.", i, ".block.", j, "."), block_in, block_out));
        block_in = block_out;
      }
      if (i != 0) level.upsample = Upsample::bind(w, str_cat("decoder.up.", i, ".upsample."), block_in);
    }
    d.norm_out = w.norm("decoder.norm_out.", block_in);
    d.conv_out = w.conv("decoder.conv_out.", block_in, p.out_ch, 3);
    return d;
  }
  // z: [z_channels, h, w] -> [out_ch, 8h, 8w]
  Tensor forward(const Tensor& z) const {
    Tensor h = mid->forward(conv_in.forward(z));
    for (auto level = up.rbegin(); level != up.rend(); ++level) {
      for (const ResnetBlock& b : level->block) h = b.forward(h);
      if (level->upsample) h = level->upsample->forward(h);
    }
    return conv_out.forward(swish(norm_out.forward(h)));
  }
};

// [1, C, H, W] -> [C, H, W]; [C, H, W] unchanged.
Tensor image_of(const Tensor& t, int64_t channels, const char* what) {
  const Tensor r = t.ndim() == 4 && t.dim(0) == 1 ? t.reshape({t.dim(1), t.dim(2), t.dim(3)}) : t;
  FLUX_CHECK(r.dtype() == DType::f32 && r.ndim() == 3 && r.dim(0) == channels, "AutoEncoder.", what, ": expected f32 [",
             channels, ", H, W], got ", t.describe());
  return r;
}

}  // namespace

struct AutoEncoder::Impl {
  std::optional<Encoder> encoder;
  Decoder decoder;
};

AutoEncoderParams AutoEncoderParams::flux() { return AutoEncoderParams{}; }

AutoEncoderParams AutoEncoderParams::resolve(const WeightStore& store, const std::string& config_path) {
  AutoEncoderParams p;
  const bool diffusers = store.contains("decoder.conv_norm_out.weight");
  // Shapes: decoder.conv_in [block_in, z, 3, 3], decoder.conv_out [out_ch, ch, 3, 3], levels and blocks counted.
  const auto shape = [&](const std::string& name) {
    FLUX_CHECK(store.contains(name), "autoencoder: tensor ", name, " missing");
    return store.get(name).shape();
  };
  const std::string up = diffusers ? "decoder.up_blocks." : "decoder.up.";
  const std::string block = diffusers ? ".resnets." : ".block.";
  int64_t n_levels = 0;
  while (store.contains(str_cat(up, n_levels, block, "0.conv1.weight"))) ++n_levels;
  FLUX_CHECK(n_levels > 0, "autoencoder: no decoder levels (", up, "N", block, "0.conv1.weight) in the weights");
  const Shape conv_out = shape("decoder.conv_out.weight");
  p.out_ch = conv_out[0];
  p.ch = conv_out[1];
  p.z_channels = shape("decoder.conv_in.weight")[1];
  if (store.contains("encoder.conv_in.weight")) p.in_channels = shape("encoder.conv_in.weight")[1];
  p.ch_mult.assign(static_cast<size_t>(n_levels), 1);
  for (int64_t i = 0; i < n_levels; ++i) {  // BFL level i = diffusers up_blocks.{n-1-i}
    const int64_t stored = diffusers ? n_levels - 1 - i : i;
    p.ch_mult[static_cast<size_t>(i)] = shape(str_cat(up, stored, block, "0.conv1.weight"))[0] / p.ch;
  }
  int64_t n_blocks = 0;
  while (store.contains(str_cat(up, 0, block, n_blocks, ".conv1.weight"))) ++n_blocks;
  p.num_res_blocks = n_blocks - 1;

  nlohmann::json cfg;
  std::string where;
  if (!config_path.empty()) {
    where = config_path;
    std::ifstream in(config_path);
    FLUX_CHECK(in.good(), "cannot open ", config_path);
    try {
      cfg = nlohmann::json::parse(in);
      if (cfg.contains("scaling_factor")) p.scale_factor = cfg["scaling_factor"].get<float>();
      if (cfg.contains("shift_factor") && !cfg["shift_factor"].is_null())
        p.shift_factor = cfg["shift_factor"].get<float>();
      if (cfg.contains("latent_channels")) p.z_channels = cfg["latent_channels"].get<int64_t>();
      if (cfg.contains("layers_per_block")) p.num_res_blocks = cfg["layers_per_block"].get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      fail(where, ": ", e.what());
    }
  } else if (store.metadata().count("config")) {
    where = "__metadata__ config of " + store.files().front();
    try {
      cfg = nlohmann::json::parse(store.metadata().at("config"));
      if (cfg.contains("scale_factor")) p.scale_factor = cfg["scale_factor"].get<float>();
      if (cfg.contains("shift_factor")) p.shift_factor = cfg["shift_factor"].get<float>();
      if (cfg.contains("resolution")) p.resolution = cfg["resolution"].get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      fail(where, ": ", e.what());
    }
  }
  return p;
}

AutoEncoder AutoEncoder::load(WeightStore& store, const AutoEncoderParams& params) {
  FLUX_CHECK(!params.ch_mult.empty() && params.ch > 0 && params.ch % kGroups == 0, "autoencoder: ch ", params.ch,
             " must be a positive multiple of ", kGroups);
  AeWeights w(store, static_cast<int64_t>(params.ch_mult.size()));
  auto impl = std::make_shared<Impl>();
  impl->decoder = Decoder::bind(w, params);
  if (store.contains(w.name("encoder.conv_in.weight"))) impl->encoder = Encoder::bind(w, params);
  const auto files = store.files();
  store.finish(str_cat("autoencoder (", files.empty() ? std::string("no file") : files.front(), ")"));
  AutoEncoder ae;
  ae.params_ = params;
  ae.impl_ = std::move(impl);
  return ae;
}

bool AutoEncoder::has_encoder() const { return impl_ && impl_->encoder.has_value(); }

Tensor AutoEncoder::decode(const Tensor& z_in) const {
  FLUX_CHECK(impl_ != nullptr, "AutoEncoder.decode: model not loaded");
  Tensor z = image_of(z_in, params_.z_channels, "decode").clone();
  float* v = z.mut<float>();
  for (int64_t i = 0; i < z.numel(); ++i) v[i] = v[i] / params_.scale_factor + params_.shift_factor;
  return impl_->decoder.forward(z);
}

Tensor AutoEncoder::encode_moments(const Tensor& x) const {
  FLUX_CHECK(has_encoder(), "AutoEncoder.encode: the autoencoder weights have no encoder");
  const Tensor img = image_of(x, params_.in_channels, "encode");
  FLUX_CHECK(img.dim(1) % 8 == 0 && img.dim(2) % 8 == 0, "AutoEncoder.encode: image size ", img.dim(1), "x", img.dim(2),
             " must be a multiple of 8");
  return impl_->encoder->forward(img);
}

Tensor AutoEncoder::encode(const Tensor& x) const {
  const Tensor moments = encode_moments(x);  // [2 z, h, w]: mean, logvar
  const int64_t zc = params_.z_channels, hw = moments.dim(1) * moments.dim(2);
  Tensor z = Tensor::empty(DType::f32, {zc, moments.dim(1), moments.dim(2)});
  const float* mean = moments.data<float>();
  float* out = z.mut<float>();
  for (int64_t i = 0; i < zc * hw; ++i) out[i] = params_.scale_factor * (mean[i] - params_.shift_factor);
  return z;
}

}  // namespace flux
