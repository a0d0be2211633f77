// LoRA adapters: reading a file into BFL-module deltas, checked against the model, and merging them into a weight
// (models/lora.h).
#include "models/lora.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "base/log.h"
#include "io/safetensors.h"
#include "kernels/low_rank.h"
#include "models/flux.h"
#include "models/lora_names.h"

namespace flux {

const char* lora_format_name(LoraFormat f) {
  switch (f) {
    case LoraFormat::kohya:
      return "kohya";
    case LoraFormat::comfyui:
      return "comfyui";
    case LoraFormat::diffusers:
      return "diffusers";
    case LoraFormat::xlabs:
      break;
  }
  return "xlabs";
}

std::optional<LoraFormat> detect_lora_format(const std::vector<std::string>& names) {
  std::map<LoraFormat, size_t> counts;
  for (const std::string& n : names)
    if (const auto k = lora::split_key(n)) ++counts[k->format];
  if (counts.empty()) return std::nullopt;
  return std::max_element(counts.begin(), counts.end(),
                          [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

namespace {

// The tensors of one stem.
struct Pieces {
  std::string down_name, up_name, alpha_name;
  Tensor down, up, alpha;
  LoraFormat format = LoraFormat::kohya;
};

std::string list(const std::vector<std::string>& names, size_t max = 12) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max) s += str_cat(", ... (", names.size() - max, " more)");
  return s;
}

// [2n, r] -> its two row halves exchanged (owned f32).
Tensor swap_row_halves(const Tensor& t) {
  Tensor out = Tensor::empty(DType::f32, t.shape());
  const size_t half = static_cast<size_t>(t.numel() / 2);
  std::memcpy(out.mut<float>(), t.data<float>() + half, half * sizeof(float));
  std::memcpy(out.mut<float>() + half, t.data<float>(), half * sizeof(float));
  return out;
}

float alpha_value(const Tensor& alpha, const std::string& path, const std::string& name) {
  FLUX_CHECK(alpha.numel() == 1 && is_float(alpha.dtype()), path, ": ", name, ": expected one float (the alpha), got ",
             alpha.describe());
  return alpha.to(DType::f32).data<float>()[0];
}

}  // namespace

LoraAdapter LoraAdapter::load(const std::string& path, const FluxParams& params, const LoraOptions& options) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  LoraAdapter a;
  a.path_ = path;
  std::map<std::string, Pieces> stems;  // sorted: deterministic order and messages
  std::vector<std::string> unknown, names;
  for (const SafetensorsEntry& e : file.entries()) {
    names.push_back(e.name);
    const auto key = lora::split_key(e.name);
    if (!key) {
      unknown.push_back(e.name);
      continue;
    }
    Pieces& p = stems[key->stem];
    p.format = key->format;
    (key->role == lora::Role::down ? p.down_name : key->role == lora::Role::up ? p.up_name : p.alpha_name) = e.name;
    (key->role == lora::Role::down ? p.down : key->role == lora::Role::up ? p.up : p.alpha) = file.tensor(e);
  }
  const auto format = detect_lora_format(names);
  FLUX_CHECK(
      format.has_value(), path, ": not a LoRA: no tensor is named like one (<module>.lora_down.weight / ",
      ".lora_up.weight / .alpha, .lora_A.weight / .lora_B.weight, or XLabs processor .down.weight / .up.weight); ",
      "its tensors: ", list(names, 6));
  a.format_ = *format;

  for (auto& [stem, p] : stems) {
    const std::string what = str_cat(path, ": ", stem);
    if (!p.down.defined() || !p.up.defined()) {
      if (!p.down.defined() && !p.up.defined()) {  // an alpha alone
        unknown.push_back(p.alpha_name);
        continue;
      }
      fail(what, ": has ", p.down.defined() ? p.down_name : p.up_name, " but no ",
           p.down.defined() ? "up (lora_up / lora_B / up) weight" : "down (lora_down / lora_A / down) weight");
    }
    FLUX_CHECK(p.down.ndim() == 2 && p.up.ndim() == 2 && is_float(p.down.dtype()) && is_float(p.up.dtype()), what,
               ": expected 2-D float down and up weights, got down ", p.down.describe(), ", up ", p.up.describe(),
               " (convolution or quantized LoRA layers are not supported)");
    const int64_t rank = p.down.dim(0);
    FLUX_CHECK(p.up.dim(1) == rank, what, ": rank mismatch: ", p.down_name, " ", p.down.shape().str(), " has rank ",
               rank, " but ", p.up_name, " ", p.up.shape().str(), " has rank ", p.up.dim(1));
    lora::KeyParts key;
    key.stem = stem;
    key.format = p.format;
    const auto target = lora::target_of(key, params);
    if (!target) {
      unknown.push_back(stem);
      continue;
    }
    const auto shape = *lora::linear_shape(params, target->module);
    FLUX_CHECK(p.down.dim(1) == shape[1] && p.up.dim(0) == target->rows, what, ": shape mismatch: up ",
               p.up.shape().str(), " @ down ", p.down.shape().str(), " is [", p.up.dim(0), ", ", p.down.dim(1),
               "], but it updates ",
               target->rows == shape[0]
                   ? std::string("the model's ")
                   : str_cat("rows [", target->row_begin, ", ", target->row_begin + target->rows, ") of the model's "),
               target->module, ".weight [", shape[0], ", ", shape[1], "]: expected [", target->rows, ", ", shape[1],
               "] (a LoRA made for another model size?)");
    LoraDelta d;
    d.key = stem;
    d.module = target->module;
    d.row_begin = target->row_begin;
    d.down = p.down.to(DType::f32).clone();
    d.up = p.up.to(DType::f32).clone();
    if (target->swap_halves) {
      FLUX_CHECK(d.up.dim(0) % 2 == 0, what, ": expected an even number of rows, got ", p.up.describe());
      d.up = swap_row_halves(d.up);
    }
    if (p.alpha.defined()) d.scale = alpha_value(p.alpha, path, p.alpha_name) / static_cast<float>(rank);
    a.deltas_.push_back(std::move(d));
  }
  if (!unknown.empty()) {
    const std::string message = str_cat(path, ": ", unknown.size(), unknown.size() == 1 ? " key names" : " keys name",
                                        " no module of this FLUX model (", params.depth, " double + ",
                                        params.depth_single_blocks, " single blocks, hidden ", params.hidden_size,
                                        params.guidance_embed ? ", dev" : ", schnell", "): ", list(unknown));
    const bool text_encoder = std::any_of(unknown.begin(), unknown.end(), [](const std::string& k) {
      return k.rfind("lora_te", 0) == 0 || k.rfind("text_encoder", 0) == 0;
    });
    const char* hint = text_encoder ? "; text-encoder adapters (lora_te*, text_encoder.*) are not applied" : "";
    if (!options.lenient) fail(message, hint, " (--lora-lenient ignores them with a warning)");
    log_warn("lora: ", message, "; ignored (lenient)");
    a.ignored_ = std::move(unknown);
  }
  FLUX_CHECK(!a.deltas_.empty(), path, ": not a LoRA for this model: no key updates any of its modules");
  return a;
}

size_t LoraAdapter::bytes() const {
  size_t n = 0;
  for (const LoraDelta& d : deltas_) n += d.down.nbytes() + d.up.nbytes();
  return n;
}

int64_t LoraAdapter::max_rank() const {
  int64_t r = 0;
  for (const LoraDelta& d : deltas_) r = std::max(r, d.rank());
  return r;
}

bool lora_touches(const LoraStack& stack, const std::string& module) {
  for (const LoraUse& use : stack)
    for (const LoraDelta& d : use.adapter->deltas())
      if (d.module == module) return true;
  return false;
}

Tensor merge_lora(const Tensor& weight, const std::string& module, const LoraStack& stack) {
  FLUX_CHECK(weight.ndim() == 2 && is_float(weight.dtype()), "lora: merging into ", module,
             ".weight: expected a 2-D float weight, got ", weight.describe());
  const int64_t out = weight.dim(0), in = weight.dim(1);
  Tensor w = weight.to(DType::f32);
  if (w.raw() == weight.raw()) w = w.clone();  // f32 (maybe a view of a mapped file): an owned copy
  float* dst = w.mut<float>();
  for (const LoraUse& use : stack) {
    for (const LoraDelta& d : use.adapter->deltas()) {
      if (d.module != module) continue;
      const int64_t rows = d.up.dim(0), rank = d.rank();
      FLUX_CHECK(d.down.dim(1) == in && d.row_begin + rows <= out, "lora ", use.adapter->path(), ": ", d.key, ": up ",
                 d.up.shape().str(), " @ down ", d.down.shape().str(), " at row ", d.row_begin, " does not fit ",
                 module, ".weight ", weight.shape().str());
      // W[rows] += (strength * scale) * (up @ down)
      kernels::gemm_f32(false, rows, in, rank, use.strength * d.scale, d.up.data<float>(), rank, d.down.data<float>(),
                        in, 1.0f, dst + d.row_begin * in, in);
    }
  }
  return weight.dtype() == DType::f32 ? w : w.to(weight.dtype());
}

}  // namespace flux
