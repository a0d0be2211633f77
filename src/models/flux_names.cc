// FluxWeights: tensors of the FLUX transformer by BFL name, from BFL checkpoints (flux1-*.safetensors) or from
// diffusers FluxTransformer2DModel folders. The one table below is the inverse of diffusers'
// scripts/convert_flux_to_diffusers.py: q/k/v are split there (concatenated back here, with proj_mlp for the
// single blocks' linear1), and final_layer.adaLN_modulation.1 has its (shift, scale) halves swapped.
#include <cstring>
#include <string_view>
#include <vector>

#include "models/flux_blocks.h"

namespace flux::transformer {
namespace {

enum class Join { one, rows, swap_halves };

// A BFL name tail (after "double_blocks.N." / "single_blocks.N." / nothing) and its diffusers counterpart(s).
// A tail ending in '.' is a module prefix: it maps "<tail>weight" and "<tail>bias" alike.
struct NameRule {
  const char* bfl;
  std::vector<const char*> diffusers;
  Join join = Join::one;
};

struct Scope {
  const char* bfl;        // "double_blocks." / "single_blocks." / ""
  const char* diffusers;  // "transformer_blocks." / "single_transformer_blocks." / ""
  std::vector<NameRule> rules;
};

const std::vector<Scope>& name_table() {
  static const std::vector<Scope> table = {
      {"double_blocks.",
       "transformer_blocks.",
       {
           {"img_mod.lin.", {"norm1.linear."}},
           {"txt_mod.lin.", {"norm1_context.linear."}},
           {"img_attn.qkv.", {"attn.to_q.", "attn.to_k.", "attn.to_v."}, Join::rows},
           {"img_attn.norm.query_norm.scale", {"attn.norm_q.weight"}},
           {"img_attn.norm.key_norm.scale", {"attn.norm_k.weight"}},
           {"img_attn.proj.", {"attn.to_out.0."}},
           {"txt_attn.qkv.", {"attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."}, Join::rows},
           {"txt_attn.norm.query_norm.scale", {"attn.norm_added_q.weight"}},
           {"txt_attn.norm.key_norm.scale", {"attn.norm_added_k.weight"}},
           {"txt_attn.proj.", {"attn.to_add_out."}},
           {"img_mlp.0.", {"ff.net.0.proj."}},
           {"img_mlp.2.", {"ff.net.2."}},
           {"txt_mlp.0.", {"ff_context.net.0.proj."}},
           {"txt_mlp.2.", {"ff_context.net.2."}},
       }},
      {"single_blocks.",
       "single_transformer_blocks.",
       {
           {"modulation.lin.", {"norm.linear."}},
           {"linear1.", {"attn.to_q.", "attn.to_k.", "attn.to_v.", "proj_mlp."}, Join::rows},
           {"linear2.", {"proj_out."}},
           {"norm.query_norm.scale", {"attn.norm_q.weight"}},
           {"norm.key_norm.scale", {"attn.norm_k.weight"}},
       }},
      {"",
       "",
       {
           {"img_in.", {"x_embedder."}},
           {"txt_in.", {"context_embedder."}},
           {"time_in.in_layer.", {"time_text_embed.timestep_embedder.linear_1."}},
           {"time_in.out_layer.", {"time_text_embed.timestep_embedder.linear_2."}},
           {"vector_in.in_layer.", {"time_text_embed.text_embedder.linear_1."}},
           {"vector_in.out_layer.", {"time_text_embed.text_embedder.linear_2."}},
           {"guidance_in.in_layer.", {"time_text_embed.guidance_embedder.linear_1."}},
           {"guidance_in.out_layer.", {"time_text_embed.guidance_embedder.linear_2."}},
           {"final_layer.adaLN_modulation.1.", {"norm_out.linear."}, Join::swap_halves},
           {"final_layer.linear.", {"proj_out."}},
       }},
  };
  return table;
}

struct Mapped {
  std::vector<std::string> names;
  Join join = Join::one;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// BFL name -> diffusers name(s). Fails (Error) for a name outside the table: a programming error.
Mapped map_name(const std::string& bfl_name) {
  for (const Scope& scope : name_table()) {
    std::string_view rest = bfl_name;
    std::string index;  // "N." of a block
    if (*scope.bfl) {
      if (!starts_with(rest, scope.bfl)) continue;
      rest.remove_prefix(std::strlen(scope.bfl));
      const size_t dot = rest.find('.');
      if (dot == std::string_view::npos) continue;
      index = std::string(rest.substr(0, dot + 1));
      rest.remove_prefix(dot + 1);
    }
    for (const NameRule& rule : scope.rules) {
      const std::string_view tail = rule.bfl;
      std::string param;  // "weight" / "bias" of a module prefix
      if (tail.back() == '.') {
        if (!starts_with(rest, tail)) continue;
        param = std::string(rest.substr(tail.size()));
        if (param.find('.') != std::string::npos) continue;
      } else if (rest != tail) {
        continue;
      }
      Mapped m;
      m.join = rule.join;
      for (const char* d : rule.diffusers) m.names.push_back(str_cat(scope.diffusers, index, d, param));
      return m;
    }
  }
  fail("flux transformer: no diffusers name for BFL tensor '", bfl_name, "'");
}

// Rows of `parts` stacked: [r0, ...] + [r1, ...] -> [r0 + r1, ...] (same dtype; f32 if the dtypes differ).
Tensor concat_rows(std::vector<Tensor> parts, const std::vector<std::string>& names, const Shape& want,
                   const std::string& bfl_name) {
  DType dtype = parts[0].dtype();
  for (const Tensor& t : parts) {
    if (t.dtype() != dtype) dtype = DType::f32;
  }
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& t = parts[i];
    FLUX_CHECK(t.ndim() == parts[0].ndim() && t.ndim() >= 1, "tensor ", names[i], ": expected ", parts[0].ndim(),
               " dims (joined into ", bfl_name, "), got ", t.describe());
    for (int d = 1; d < t.ndim(); ++d) {
      FLUX_CHECK(t.dim(d) == parts[0].dim(d), "tensor ", names[i], ": shape ", t.shape().str(), " does not match ",
                 names[0], " ", parts[0].shape().str(), " (joined into ", bfl_name, ")");
    }
    rows += t.dim(0);
  }
  Shape shape = parts[0].shape();
  shape[0] = rows;
  FLUX_CHECK(want.ndim() == 0 || shape == want, "tensors ", names[0], " ... ", names.back(), " joined into ", bfl_name,
             ": expected shape ", want.str(), ", got ", shape.str());
  Tensor out = Tensor::empty(dtype, shape);
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  for (Tensor& t : parts) {
    if (t.dtype() != dtype) t = t.to(dtype);
    std::memcpy(dst, t.raw(), t.nbytes());
    dst += t.nbytes();
  }
  return out;
}

// [2n, ...] -> its two halves along dim 0 exchanged.
Tensor swap_halves(const Tensor& t) {
  const size_t half = t.nbytes() / 2;
  Tensor out = Tensor::empty(t.dtype(), t.shape());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  const auto* src = static_cast<const uint8_t*>(t.raw());
  std::memcpy(dst, src + half, half);
  std::memcpy(dst + half, src, half);
  return out;
}

}  // namespace

std::optional<DiffusersModule> bfl_module_of_diffusers(const std::string& diffusers_module) {
  for (const Scope& scope : name_table()) {
    std::string_view rest = diffusers_module;
    std::string index;  // "N." of a block
    if (*scope.diffusers) {
      if (!starts_with(rest, scope.diffusers)) continue;
      rest.remove_prefix(std::strlen(scope.diffusers));
      const size_t dot = rest.find('.');
      if (dot == std::string_view::npos) continue;
      index = std::string(rest.substr(0, dot + 1));
      rest.remove_prefix(dot + 1);
    }
    for (const NameRule& rule : scope.rules) {
      const std::string_view bfl = rule.bfl;
      if (bfl.back() != '.') continue;  // a parameter (norm scale), not a module
      for (size_t i = 0; i < rule.diffusers.size(); ++i) {
        const std::string_view d = rule.diffusers[i];
        if (d.substr(0, d.size() - 1) != rest) continue;
        DiffusersModule m;
        m.bfl = str_cat(scope.bfl, index, bfl.substr(0, bfl.size() - 1));
        m.part = static_cast<int>(i);
        m.n_parts = static_cast<int>(rule.diffusers.size());
        m.swap_halves = rule.join == Join::swap_halves;
        return m;
      }
    }
  }
  return std::nullopt;
}

bool FluxWeights::is_diffusers(const WeightStore& store) { return store.contains("x_embedder.weight"); }

bool FluxWeights::has(const WeightStore& store, const std::string& bfl_name) {
  if (!is_diffusers(store)) return store.contains(bfl_name);
  for (const std::string& n : map_name(bfl_name).names) {
    if (!store.contains(n)) return false;
  }
  return true;
}

Shape FluxWeights::shape_in(const WeightStore& store, const std::string& bfl_name) {
  const std::string name = is_diffusers(store) ? map_name(bfl_name).names[0] : bfl_name;
  return store.contains(name) ? store.get(name).shape() : Shape();
}

Tensor FluxWeights::get(const std::string& bfl_name, const Shape& shape, bool to_f32) {
  if (!diffusers_) return to_f32 ? store_.require_f32(bfl_name, shape) : store_.require(bfl_name, shape);
  const Mapped m = map_name(bfl_name);
  if (m.join != Join::rows) {
    Tensor t = to_f32 ? store_.require_f32(m.names[0], shape) : store_.require(m.names[0], shape);
    if (!t.defined() || m.join == Join::one) return t;
    FLUX_CHECK(t.dim(0) % 2 == 0, "tensor ", m.names[0], ": expected an even first dim, got ", t.describe());
    return swap_halves(t);
  }
  // Row-joined parts: shapes checked once joined (the parts' own shapes are not known in advance).
  std::vector<Tensor> parts;
  for (const std::string& n : m.names) {
    parts.push_back(to_f32 ? store_.require_f32(n, {}) : store_.require(n, {}));
    if (!parts.back().defined()) return Tensor();
  }
  return concat_rows(std::move(parts), m.names, shape, bfl_name);
}

nn::Linear FluxWeights::linear(const std::string& prefix, int64_t in, int64_t out, bool bias) {
  const std::string module = prefix.substr(0, prefix.size() - 1);
  Tensor w = get(prefix + "weight", {out, in}, false);
  if (w.defined() && merged_ != nullptr && lora_touches(*merged_, module)) w = merge_lora(w, module, *merged_);
  Tensor b = bias ? get(prefix + "bias", {out}, true) : Tensor();
  nn::Linear l;
  if (w.defined() && (!bias || b.defined())) l.op = kernels::Linear(w, b, mode_);
  l.lora_slot = static_cast<int>(slots_.size());
  slots_.push_back({module, {out, in}});
  return l;
}

nn::RMSNorm FluxWeights::rms_norm(const std::string& name, int64_t dim, float eps) {
  nn::RMSNorm n;
  n.weight = get(name, {dim}, true);
  n.dim = dim;
  n.eps = eps;
  return n;
}

}  // namespace flux::transformer
