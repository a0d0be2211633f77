// The FLUX autoencoder (BFL flux/modules/autoencoder.py): Encoder and Decoder of ResnetBlocks, one AttnBlock in
// the middle, GroupNorm(32, eps 1e-6) and swish. Activations are one image [C, H, W] as a kernels::FeatureMap in
// the convolutions' layout (nChw8c / nChw16c where oneDNN picks them), converted only at the input and output.
#include "models/autoencoder.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/thread_pool.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/conv_layer.h"
#include "kernels/matmul.h"
#include "models/autoencoder_tiling.h"
#include "models/nn.h"

namespace flux {
namespace {

using kernels::FeatureMap;

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

// GroupNorm(32, eps 1e-6) over a FeatureMap, optionally fused with the swish that follows it.
struct Norm {
  Tensor weight, bias;  // F32 [C]
  int64_t channels = 0;
  void forward(const FeatureMap& x, FeatureMap& y, bool swish) const {
    if (&y != &x) y.reshape(x.channels(), x.height(), x.width(), x.block());
    kernels::group_norm_blocked(x.data(), y.data(), channels, x.height() * x.width(), x.block(), kGroups,
                                weight.data<float>(), bias.data<float>(), kEps, swish);
  }
};

struct Conv {
  kernels::Conv2d op;
  void forward(const FeatureMap& x, FeatureMap& y) const { op.forward(x, y); }
};

// Binds autoencoder weights by BFL name from BFL or diffusers files.
class AeWeights {
 public:
  AeWeights(WeightStore& store, int64_t n_levels, const AutoEncoderOptions& options)
      : store_(store), n_levels_(n_levels), options_(options) {
    diffusers_ = store.contains("decoder.conv_norm_out.weight") || store.contains("encoder.conv_norm_out.weight");
  }
  std::string name(const std::string& bfl) const { return diffusers_ ? ae_diffusers_name(bfl, n_levels_) : bfl; }

  // pad -1 = kernel / 2 on every side.
  Conv conv(const std::string& prefix, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t pad = -1) {
    const std::string n = name(prefix);
    Tensor w = store_.require(n + "weight", {out, in, kernel, kernel});
    Tensor b = store_.require_f32(n + "bias", {out});
    if (!w.defined() || !b.defined()) return {};
    if (!is_float(w.dtype())) w = w.to(DType::f32);  // block-quantized (GGUF): dequantized once
    const int64_t p = pad < 0 ? kernel / 2 : pad;
    const kernels::Conv2dParams padding{.stride = stride, .pad_top = p, .pad_bottom = p, .pad_left = p, .pad_right = p};
    const DType compute = compute_for(w.dtype());
    Conv c{kernels::Conv2d(std::move(w), std::move(b), padding, compute, options_.conv_mode)};
    if (prefix.rfind("decoder.", 0) == 0) c.op.prepare();  // every job decodes; the encoder prepares on first use
    return c;
  }
  Conv downsample_conv(const std::string& prefix, int64_t channels) {  // pad right and bottom by one, stride 2
    const std::string n = name(prefix);
    Tensor w = store_.require(n + "weight", {channels, channels, 3, 3});
    Tensor b = store_.require_f32(n + "bias", {channels});
    if (!w.defined() || !b.defined()) return {};
    if (!is_float(w.dtype())) w = w.to(DType::f32);
    const kernels::Conv2dParams padding{.stride = 2, .pad_top = 0, .pad_bottom = 1, .pad_left = 0, .pad_right = 1};
    const DType compute = compute_for(w.dtype());
    return {kernels::Conv2d(std::move(w), std::move(b), padding, compute, options_.conv_mode)};
  }
  Norm norm(const std::string& prefix, int64_t channels) {
    const std::string n = name(prefix);
    return {store_.require_f32(n + "weight", {channels}), store_.require_f32(n + "bias", {channels}), channels};
  }
  // A 1x1 convolution over C channels ([C, C, 1, 1]; diffusers stores [C, C]) as a Linear on [HW, C] rows.
  nn::Linear conv1x1_as_linear(const std::string& prefix, int64_t channels) {
    const std::string n = name(prefix);
    Tensor w = diffusers_ ? store_.require_f32(n + "weight", {channels, channels})
                          : store_.require_f32(n + "weight", {channels, channels, 1, 1});
    Tensor b = store_.require_f32(n + "bias", {channels});
    nn::Linear l;
    // The mid block's attention stays out of int8 (a small share of the decode, and its scores feed a softmax).
    if (w.defined() && b.defined()) {
      l.op = kernels::Linear(w.reshape({channels, channels}), b, kernels::default_weight_mode(),
                             nn::precision_without_int8());
    }
    return l;
  }

 private:
  DType compute_for(DType stored) const { return vae_conv_compute(stored, options_); }

  WeightStore& store_;
  int64_t n_levels_ = 0;
  AutoEncoderOptions options_;
  bool diffusers_ = false;
};

// ---- modules: activations are FeatureMaps; each forward() replaces x with its output, using the two scratch
// maps of a Scratch (reused across layers, so a pass allocates only as its maps grow) ----

struct Scratch {
  FeatureMap a, b;
};

// Sizes the three maps of a pass (x and the scratch pair) for its largest layer up front, so they are
// allocated and faulted in once, not regrown level by level. widest: max over layers of channels x pixels.
void reserve(FeatureMap& x, Scratch& s, int64_t widest) {
  const int64_t block = kernels::conv_preferred_block();
  for (FeatureMap* m : {&x, &s.a, &s.b}) m->reshape(1, 1, widest + block, 1);  // later reshapes keep it
}

// The largest channels x pixels of the maps at levels of `channels[i]` channels and `pixels[i]` pixels, level
// i + 1 at a quarter of level i's pixels; a level's maps also hold its neighbour's channels at its own size
// (the encoder's first block at a level, the decoder's upsampling convolution).
int64_t widest_map(const std::vector<int64_t>& channels, int64_t pixels) {
  int64_t widest = 0;
  for (size_t i = 0; i < channels.size(); ++i, pixels /= 4) {
    const int64_t c = std::max(channels[i], i + 1 < channels.size() ? channels[i + 1] : 0);
    widest = std::max(widest, std::max(c, i > 0 ? channels[i - 1] : 0) * pixels);
  }
  return widest;
}

std::vector<int64_t> level_channels(const AutoEncoderParams& p) {
  std::vector<int64_t> c;
  for (int64_t m : p.ch_mult) c.push_back(p.ch * m);
  return c;
}

// y += x, x in y's layout (reblocked through tmp if not).
void add_into(FeatureMap& y, const FeatureMap& x, FeatureMap& tmp) {
  FLUX_CHECK(y.channels() == x.channels() && y.height() == x.height() && y.width() == x.width(),
             "autoencoder: residual shapes differ");
  const FeatureMap* src = &x;
  if (x.block() != y.block()) {
    x.reblock(y.block(), tmp);
    src = &tmp;
  }
  float* out = y.data();
  const float* in = src->data();
  parallel_for(
      y.n_floats(), [&](int64_t s, int64_t e) { kernels::add(out + s, in + s, out + s, e - s); }, 1 << 14);
}

struct ResnetBlock {
  Norm norm1, norm2;
  Conv conv1, conv2;
  std::optional<Conv> nin_shortcut;  // 1x1, only when in != out

  static ResnetBlock bind(AeWeights& w, const std::string& prefix, int64_t in, int64_t out) {
    ResnetBlock b;
    b.norm1 = w.norm(prefix + "norm1.", in);
    b.conv1 = w.conv(prefix + "conv1.", in, out, 3);
    b.norm2 = w.norm(prefix + "norm2.", out);
    b.conv2 = w.conv(prefix + "conv2.", out, out, 3);
    if (in != out) b.nin_shortcut = w.conv(prefix + "nin_shortcut.", in, out, 1);
    return b;
  }
  // x: [in, H, W] -> x + h: [out, H, W]
  void forward(FeatureMap& x, Scratch& s) const {
    norm1.forward(x, s.a, true);  // a = swish(norm1(x))
    conv1.forward(s.a, s.b);      // b = conv1(a)
    norm2.forward(s.b, s.b, true);
    conv2.forward(s.b, s.a);  // a = h
    if (nin_shortcut) {
      nin_shortcut->forward(x, s.b);
      add_into(s.a, s.b, x);  // x is dead: scratch for a reblock
    } else {
      add_into(s.a, x, s.b);
    }
    std::swap(x, s.a);
  }
};

// Single-head self-attention over the H*W positions, C channels.
struct AttnBlock {
  Norm norm;
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
  void forward(FeatureMap& x, Scratch& s) const {
    const int64_t hw = x.height() * x.width();
    norm.forward(x, s.a, false);
    Tensor h = Tensor::empty(DType::f32, {hw, channels});  // [C, HW] -> [HW, C]
    s.a.to_rows(h.mut<float>());
    const Tensor hq = q.forward(h), hk = k.forward(h), hv = v.forward(h);  // [HW, C] = [1 head, HW, C]
    kernels::AttentionParams p;
    p.n_heads = 1;
    p.len_q = p.len_k = hw;
    p.head_dim = channels;
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(channels)));
    kernels::attention(p, hq.data<float>(), hk.data<float>(), hv.data<float>(), h.mut<float>());
    x.add_rows(proj_out.forward(h).data<float>());  // x + proj_out(attn)
  }
};

struct Downsample {
  Conv conv;  // pads right and bottom by one, 3x3 stride 2
  void forward(FeatureMap& x, Scratch& s) const {
    conv.forward(x, s.a);
    std::swap(x, s.a);
  }
};

// Nearest-neighbour x2, then a 3x3 convolution.
struct Upsample {
  Conv conv;
  void forward(FeatureMap& x, Scratch& s) const {
    s.a.reshape(x.channels(), 2 * x.height(), 2 * x.width(), x.block());
    kernels::upsample_nearest2x_blocked(x.data(), s.a.data(), x.channels(), x.height(), x.width(), x.block());
    conv.forward(s.a, s.b);
    std::swap(x, s.b);
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
  void forward(FeatureMap& x, Scratch& s) const {
    block_1.forward(x, s);
    attn_1.forward(x, s);
    block_2.forward(x, s);
  }
};

struct Level {
  std::vector<ResnetBlock> block;
  std::optional<Downsample> downsample;
  std::optional<Upsample> upsample;
};

// [C, H, W] plain -> a FeatureMap in the convolutions' block (plain when C is not a multiple of it).
FeatureMap input_map(const Tensor& t) {
  const int64_t c = t.dim(0), block = kernels::conv_preferred_block();
  FeatureMap m;
  m.from_plain(t.data<float>(), c, t.dim(1), t.dim(2), c % block == 0 ? block : 1);
  return m;
}

Tensor output_tensor(const FeatureMap& m) {
  Tensor t = Tensor::empty(DType::f32, {m.channels(), m.height(), m.width()});
  m.to_plain(t.mut<float>());
  return t;
}

struct Encoder {
  Conv conv_in;
  std::vector<Level> down;
  std::optional<Mid> mid;
  Norm norm_out;
  Conv conv_out;
  std::vector<int64_t> channels;  // per level

  static Encoder bind(AeWeights& w, const AutoEncoderParams& p) {
    Encoder e;
    e.channels = level_channels(p);
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
        level.downsample = Downsample{w.downsample_conv(str_cat("encoder.down.", i, ".downsample.conv."), block_in)};
      e.down.push_back(std::move(level));
    }
    e.mid = Mid::bind(w, "encoder.mid.", block_in);
    e.norm_out = w.norm("encoder.norm_out.", block_in);
    e.conv_out = w.conv("encoder.conv_out.", block_in, 2 * p.z_channels, 3);
    return e;
  }
  // x: [in_channels, H, W] -> moments [2 z_channels, H/8, W/8]
  Tensor forward(const Tensor& x) const {
    const FeatureMap in = input_map(x);
    FeatureMap h;
    Scratch s;
    reserve(h, s, widest_map(channels, x.dim(1) * x.dim(2)));
    conv_in.forward(in, h);
    for (const Level& level : down) {
      for (const ResnetBlock& b : level.block) b.forward(h, s);
      if (level.downsample) level.downsample->forward(h, s);
    }
    mid->forward(h, s);
    norm_out.forward(h, s.a, true);
    conv_out.forward(s.a, s.b);
    return output_tensor(s.b);
  }
};

struct Decoder {
  Conv conv_in;
  std::optional<Mid> mid;
  std::vector<Level> up;  // up[0] is the full-resolution level; run from up[n-1] down to up[0]
  Norm norm_out;
  Conv conv_out;
  std::vector<int64_t> channels;  // per level

  static Decoder bind(AeWeights& w, const AutoEncoderParams& p) {
    Decoder d;
    d.channels = level_channels(p);
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
      if (i != 0)
        level.upsample = Upsample{w.conv(str_cat("decoder.up.", i, ".upsample.conv."), block_in, block_in, 3)};
    }
    d.norm_out = w.norm("decoder.norm_out.", block_in);
    d.conv_out = w.conv("decoder.conv_out.", block_in, p.out_ch, 3);
    return d;
  }
  // z: [z_channels, h, w] -> [out_ch, 8h, 8w]
  Tensor forward(const Tensor& z) const {
    const FeatureMap in = input_map(z);
    FeatureMap h;
    Scratch s;
    reserve(h, s, widest_map(channels, 64 * z.dim(1) * z.dim(2)));
    conv_in.forward(in, h);
    mid->forward(h, s);
    for (auto level = up.rbegin(); level != up.rend(); ++level) {
      for (const ResnetBlock& b : level->block) b.forward(h, s);
      if (level->upsample) level->upsample->forward(h, s);
    }
    norm_out.forward(h, s.a, true);
    conv_out.forward(s.a, s.b);
    return output_tensor(s.b);
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

DType vae_conv_compute(DType stored, const AutoEncoderOptions& options) {
  if (options.compute) return *options.compute;
  if (const char* env = std::getenv("FLUX_VAE_BF16")) return std::strcmp(env, "0") != 0 ? DType::bf16 : DType::f32;
  switch (kernels::default_precision()) {
    case kernels::Precision::f32:
      return DType::f32;
    case kernels::Precision::bf16:
    case kernels::Precision::int8:  // no int8 convolutions: bf16, the fastest there is
      return DType::bf16;
    case kernels::Precision::automatic:
      break;
  }
  const bool narrow = stored == DType::bf16 || stored == DType::f16;
  return narrow && kernels::linear_compute_dtype() == DType::bf16 ? DType::bf16 : DType::f32;
}

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

AutoEncoder AutoEncoder::load(WeightStore& store, const AutoEncoderParams& params, const AutoEncoderOptions& options) {
  FLUX_CHECK(!params.ch_mult.empty() && params.ch > 0 && params.ch % kGroups == 0, "autoencoder: ch ", params.ch,
             " must be a positive multiple of ", kGroups);
  AeWeights w(store, static_cast<int64_t>(params.ch_mult.size()), options);
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

DType AutoEncoder::compute_dtype() const {
  FLUX_CHECK(impl_ != nullptr, "AutoEncoder: model not loaded");
  return impl_->decoder.conv_in.op.compute_dtype();
}

uint64_t AutoEncoder::decode_activation_bytes(const AutoEncoderParams& p, int64_t width, int64_t height) {
  // The widest full-resolution map: level 1's upsampling convolution runs at H x W with ch * ch_mult[1]
  // channels; a pass holds three maps (the block's input and two scratch maps).
  int64_t widest = p.ch * p.ch_mult.front();
  if (p.ch_mult.size() > 1) widest = std::max(widest, p.ch * p.ch_mult[1]);
  return uint64_t{3} * sizeof(float) * static_cast<uint64_t>(widest) * static_cast<uint64_t>(width) *
         static_cast<uint64_t>(height);
}

VaeTiling AutoEncoder::auto_tiling(const AutoEncoderParams& p, int64_t width, int64_t height) {
  VaeTiling t;
  if (decode_activation_bytes(p, width, height) > kAutoTileBytes) t.tile = kAutoTile;
  return t;
}

Tensor AutoEncoder::decode(const Tensor& z_in, const VaeTiling& tiling) const {
  FLUX_CHECK(impl_ != nullptr, "AutoEncoder.decode: model not loaded");
  Tensor z = image_of(z_in, params_.z_channels, "decode").clone();
  float* v = z.mut<float>();
  for (int64_t i = 0; i < z.numel(); ++i) v[i] = v[i] / params_.scale_factor + params_.shift_factor;
  const Decoder& decoder = impl_->decoder;
  return run_tiled(z, TileScale::decode, params_.out_ch, tiling, [&](const Tensor& t) { return decoder.forward(t); });
}

Tensor AutoEncoder::encode_moments(const Tensor& x, const VaeTiling& tiling) const {
  FLUX_CHECK(has_encoder(), "AutoEncoder.encode: the autoencoder weights have no encoder");
  const Tensor img = image_of(x, params_.in_channels, "encode");
  FLUX_CHECK(img.dim(1) % 8 == 0 && img.dim(2) % 8 == 0, "AutoEncoder.encode: image size ", img.dim(1), "x", img.dim(2),
             " must be a multiple of 8");
  const Encoder& encoder = *impl_->encoder;
  return run_tiled(img, TileScale::encode, 2 * params_.z_channels, tiling,
                   [&](const Tensor& t) { return encoder.forward(t); });
}

Tensor AutoEncoder::encode(const Tensor& x, const VaeTiling& tiling) const {
  const Tensor moments = encode_moments(x, tiling);  // [2 z, h, w]: mean, logvar
  const int64_t zc = params_.z_channels, hw = moments.dim(1) * moments.dim(2);
  Tensor z = Tensor::empty(DType::f32, {zc, moments.dim(1), moments.dim(2)});
  const float* mean = moments.data<float>();
  float* out = z.mut<float>();
  for (int64_t i = 0; i < zc * hw; ++i) out[i] = params_.scale_factor * (mean[i] - params_.shift_factor);
  return z;
}

}  // namespace flux
