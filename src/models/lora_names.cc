// LoRA key names -> BFL modules (models/lora_names.h). kohya spells BFL paths with '_' for '.', ComfyUI keeps them
// dotted under "diffusion_model.", diffusers / PEFT use FluxTransformer2DModel names (mapped through flux_names.cc's
// table), XLabs names its attention processors' LoRA layers.
#include "models/lora_names.h"

#include <charconv>
#include <string_view>
#include <vector>

#include "models/flux_blocks.h"

namespace flux::lora {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// The BFL Linear modules, by scope; their [out, in] from the params.
enum class Scope { top, double_block, single_block };
struct Module {
  Scope scope;
  const char* tail;  // after "double_blocks.N." / "single_blocks.N." / nothing
};
const std::vector<Module>& modules() {
  static const std::vector<Module> m = {
      {Scope::top, "img_in"},
      {Scope::top, "txt_in"},
      {Scope::top, "time_in.in_layer"},
      {Scope::top, "time_in.out_layer"},
      {Scope::top, "vector_in.in_layer"},
      {Scope::top, "vector_in.out_layer"},
      {Scope::top, "guidance_in.in_layer"},
      {Scope::top, "guidance_in.out_layer"},
      {Scope::top, "final_layer.linear"},
      {Scope::top, "final_layer.adaLN_modulation.1"},
      {Scope::double_block, "img_mod.lin"},
      {Scope::double_block, "img_attn.qkv"},
      {Scope::double_block, "img_attn.proj"},
      {Scope::double_block, "img_mlp.0"},
      {Scope::double_block, "img_mlp.2"},
      {Scope::double_block, "txt_mod.lin"},
      {Scope::double_block, "txt_attn.qkv"},
      {Scope::double_block, "txt_attn.proj"},
      {Scope::double_block, "txt_mlp.0"},
      {Scope::double_block, "txt_mlp.2"},
      {Scope::single_block, "linear1"},
      {Scope::single_block, "linear2"},
      {Scope::single_block, "modulation.lin"},
  };
  return m;
}

const char* scope_prefix(Scope s) {
  return s == Scope::double_block ? "double_blocks." : s == Scope::single_block ? "single_blocks." : "";
}

std::string underscored(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

// "N<sep>rest" -> N and rest; nullopt without digits or separator.
std::optional<std::pair<int64_t, std::string_view>> block_index(std::string_view s, char sep) {
  int64_t n = -1;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p == s.data() || p == s.data() + s.size() || *p != sep) return std::nullopt;
  return std::pair{n, s.substr(static_cast<size_t>(p - s.data()) + 1)};
}

// A BFL path spelled with `sep` between its parts ('.' ComfyUI, '_' kohya) -> the dotted BFL module name.
std::optional<std::string> bfl_module(std::string_view path, char sep) {
  for (const Scope scope : {Scope::double_block, Scope::single_block}) {
    std::string prefix = scope_prefix(scope);
    if (sep == '_') prefix = underscored(prefix);
    if (!starts_with(path, prefix)) continue;
    const auto index = block_index(path.substr(prefix.size()), sep);
    if (!index) return std::nullopt;
    for (const Module& m : modules()) {
      if (m.scope != scope) continue;
      if (index->second == (sep == '_' ? underscored(m.tail) : std::string(m.tail)))
        return str_cat(scope_prefix(scope), index->first, ".", m.tail);
    }
    return std::nullopt;
  }
  for (const Module& m : modules())
    if (m.scope == Scope::top && path == (sep == '_' ? underscored(m.tail) : std::string(m.tail))) return m.tail;
  return std::nullopt;
}

}  // namespace

std::optional<KeyParts> split_key(const std::string& name) {
  static const std::pair<const char*, Role> kSuffixes[] = {
      {".lora_down.weight", Role::down}, {".lora_up.weight", Role::up}, {".lora_A.weight", Role::down},
      {".lora_B.weight", Role::up},      {".alpha", Role::alpha},       {".down.weight", Role::down},
      {".up.weight", Role::up}};
  for (const auto& [suffix, role] : kSuffixes) {
    if (!ends_with(name, suffix)) continue;
    KeyParts k;
    k.stem = name.substr(0, name.size() - std::string_view(suffix).size());
    k.role = role;
    const std::string_view s = suffix;
    if (starts_with(k.stem, "lora_unet_"))
      k.format = LoraFormat::kohya;
    else if (k.stem.find(".processor.") != std::string::npos)
      k.format = LoraFormat::xlabs;
    else if (s == ".lora_A.weight" || s == ".lora_B.weight")
      k.format = LoraFormat::diffusers;
    else if (s == ".down.weight" || s == ".up.weight")
      return std::nullopt;  // XLabs spelling outside its processors: not a key we know
    else
      k.format = LoraFormat::comfyui;  // dotted BFL paths, "diffusion_model." or bare
    return k;
  }
  return std::nullopt;
}

std::optional<std::array<int64_t, 2>> linear_shape(const FluxParams& p, const std::string& module) {
  const int64_t h = p.hidden_size, mlp = static_cast<int64_t>(static_cast<float>(h) * p.mlp_ratio);
  std::string_view tail = module;
  Scope scope = Scope::top;
  for (const Scope s : {Scope::double_block, Scope::single_block}) {
    if (!starts_with(tail, scope_prefix(s))) continue;
    const auto index = block_index(tail.substr(std::string_view(scope_prefix(s)).size()), '.');
    if (!index || index->first < 0 || index->first >= (s == Scope::double_block ? p.depth : p.depth_single_blocks))
      return std::nullopt;
    scope = s;
    tail = index->second;
  }
  using S = std::array<int64_t, 2>;
  if (scope == Scope::double_block) {
    if (tail.size() < 4 || !(starts_with(tail, "img_") || starts_with(tail, "txt_"))) return std::nullopt;
    const std::string_view t = tail.substr(4);
    if (t == "mod.lin") return S{6 * h, h};
    if (t == "attn.qkv") return S{3 * h, h};
    if (t == "attn.proj") return S{h, h};
    if (t == "mlp.0") return S{mlp, h};
    if (t == "mlp.2") return S{h, mlp};
    return std::nullopt;
  }
  if (scope == Scope::single_block) {
    if (tail == "linear1") return S{3 * h + mlp, h};
    if (tail == "linear2") return S{h, h + mlp};
    if (tail == "modulation.lin") return S{3 * h, h};
    return std::nullopt;
  }
  if (tail == "img_in") return S{h, p.in_channels};
  if (tail == "txt_in") return S{h, p.context_in_dim};
  if (tail == "time_in.in_layer") return S{h, 256};
  if (tail == "vector_in.in_layer") return S{h, p.vec_in_dim};
  if (tail == "time_in.out_layer" || tail == "vector_in.out_layer") return S{h, h};
  if (tail == "guidance_in.in_layer" && p.guidance_embed) return S{h, 256};
  if (tail == "guidance_in.out_layer" && p.guidance_embed) return S{h, h};
  if (tail == "final_layer.linear") return S{p.out_channels, h};
  if (tail == "final_layer.adaLN_modulation.1") return S{2 * h, h};
  return std::nullopt;
}

std::optional<Target> target_of(const KeyParts& key, const FluxParams& p) {
  const int64_t h = p.hidden_size, mlp = static_cast<int64_t>(static_cast<float>(h) * p.mlp_ratio);
  std::string_view stem = key.stem;
  Target t;
  switch (key.format) {
    case LoraFormat::kohya: {
      const auto m = bfl_module(stem.substr(std::string_view("lora_unet_").size()), '_');
      if (!m) return std::nullopt;
      t.module = *m;
      break;
    }
    case LoraFormat::comfyui: {
      for (const char* prefix : {"model.diffusion_model.", "diffusion_model."})
        if (starts_with(stem, prefix)) stem.remove_prefix(std::string_view(prefix).size());
      const auto m = bfl_module(stem, '.');
      if (!m) return std::nullopt;
      t.module = *m;
      break;
    }
    case LoraFormat::diffusers: {
      for (const char* prefix : {"base_model.model.", "transformer."})
        if (starts_with(stem, prefix)) stem.remove_prefix(std::string_view(prefix).size());
      const auto m = transformer::bfl_module_of_diffusers(std::string(stem));
      if (!m) return std::nullopt;
      t.module = m->bfl;
      t.swap_halves = m->swap_halves;
      if (m->n_parts > 1) {  // q | k | v [| mlp] rows of a fused weight
        t.row_begin = m->part * h;
        t.rows = m->part < 3 ? h : mlp;
      }
      break;
    }
    case LoraFormat::xlabs: {
      // double_blocks.N.processor.{qkv,proj}_lora{1 (img), 2 (txt)}; single_blocks.N.processor.{qkv,proj}_lora
      const size_t at = stem.find(".processor.");
      const std::string_view block = stem.substr(0, at),
                             layer = stem.substr(at + std::string_view(".processor.").size());
      const bool is_double = starts_with(block, "double_blocks."), is_single = starts_with(block, "single_blocks.");
      if (is_double && (layer == "qkv_lora1" || layer == "qkv_lora2")) {
        t.module = str_cat(block, layer.back() == '1' ? ".img_attn.qkv" : ".txt_attn.qkv");
      } else if (is_double && (layer == "proj_lora1" || layer == "proj_lora2")) {
        t.module = str_cat(block, layer.back() == '1' ? ".img_attn.proj" : ".txt_attn.proj");
      } else if (is_single && layer == "qkv_lora") {
        t.module = str_cat(block, ".linear1");
        t.rows = 3 * h;  // q | k | v of linear1; its MLP rows untouched
      } else if (is_single && layer == "proj_lora") {
        t.module = str_cat(block, ".linear2");
      } else {
        return std::nullopt;
      }
      break;
    }
  }
  const auto shape = linear_shape(p, t.module);
  if (!shape) return std::nullopt;
  if (t.rows == 0) t.rows = (*shape)[0];
  return t;
}

}  // namespace flux::lora
