// `fluxcpp quantize IN OUT --type T [--layout city96|sdcpp] [--quantizer ref|search]`: a FLUX transformer (BFL
// names, optionally "model.diffusion_model."-prefixed) or a T5 encoder (HF names) from safetensors (or a float
// GGUF) to a GGUF file in the layout the FLUX GGUF files people download have:
// - city96 (ComfyUI-GGUF tools/convert.py + lcpp.patch, arch flux): KV general.architecture "flux",
//   general.quantization_version 2, general.file_type (llama.cpp's LlamaFileType); 1-D tensors and the input
//   layers F32, the small embedders' output layers F16, the rest the type, F16 where rows are not whole blocks.
// - sdcpp (stable-diffusion.cpp `sd-cli -M convert`, src/model_loader.cpp tensor_should_be_converted): no KV
//   pairs; biases, scales, the embedders and the final layer keep the source type, so do tensors whose rows
//   are not whole blocks; the rest is converted.
// - T5 encoders are written as llama.cpp writes them (convert_hf_to_gguf.py T5EncoderModel): its tensor names
//   (models/t5_encoder.h t5_gguf_name) and t5encoder.* KV pairs, 1-D tensors and attn_rel_b F32.
// The type and KV rules live in pipeline/gguf_layout.h (make-test-model writes the same layouts).
// Tensors go out in name order, read one at a time from the mapping and quantized in row chunks, so memory
// stays near one chunk whatever the model size. The quantizer is ggml's (tensor/quantize.h): `ref` =
// quantize_row_*_ref (gguf-py), `search` = the importance search with unit weights (sd-cli).
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command.h"
#include "io/gguf_writer.h"
#include "io/weight_store.h"
#include "models/t5_encoder.h"
#include "pipeline/gguf_layout.h"
#include "tensor/quantize.h"

namespace flux::cli {
namespace {

struct QuantizeOptions {
  std::string in, out, type, layout, quantizer;
  bool any_tensors = false;  // hidden: any tensor set, no model detection (tests quantize the golden zoo)
};

enum class Layout { city96, sdcpp };
enum class Model { flux, t5, tensors };

using TypeName = GgufFileType;
int64_t row_length(const Shape& s) { return s.ndim() == 0 ? 1 : s[s.ndim() - 1]; }

// A dtype GGUF can hold as it is (ggml_type_of knows it), else f32.
DType storable(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16 ? d : DType::f32; }

struct Planned {
  std::string source;  // name in the store
  GgufTensorSpec spec;
};

Model detect(WeightStore& store, bool any_tensors, const std::string& in) {
  if (any_tensors) return Model::tensors;
  store.strip_prefix("model.diffusion_model.");
  if (store.contains("double_blocks.0.img_attn.qkv.weight")) return Model::flux;
  FLUX_CHECK(!store.contains("x_embedder.weight") && !store.contains("transformer_blocks.0.attn.to_q.weight"), in,
             ": diffusers FluxTransformer2DModel names: quantize takes the BFL single file (flux1-*.safetensors, "
             "names like double_blocks.0.img_attn.qkv.weight)");
  T5Encoder::use_hf_names(store);  // a float T5 GGUF in llama.cpp names
  if (store.contains("encoder.block.0.layer.0.SelfAttention.q.weight")) return Model::t5;
  fail(in,
       ": not a FLUX transformer (no double_blocks.0.img_attn.qkv.weight) nor a T5 encoder (no "
       "encoder.block.0.layer.0.SelfAttention.q.weight); ",
       store.names().size(), " tensors, the first '", store.names().empty() ? "" : store.names().front(), "'");
}

// The output tensors in name order with their types.
std::vector<Planned> plan(const WeightStore& store, Model model, Layout layout, DType type, const std::string& in) {
  std::vector<Planned> out;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name);
    FLUX_CHECK(!is_quantized(t.dtype()), in, ": tensor '", name, "' is already quantized (", dtype_name(t.dtype()),
               "): quantize from the f32/bf16/f16 original");
    FLUX_CHECK(is_float(t.dtype()), in, ": tensor '", name, "' has dtype ", dtype_name(t.dtype()),
               ", not a float type");
    Planned p{name, {name, type, t.shape()}};
    if (model == Model::t5) {
      if (name == "encoder.embed_tokens.weight" && store.contains("shared.weight")) continue;  // a tied copy
      p.spec.name = t5_gguf_name(name == "encoder.embed_tokens.weight" ? "shared.weight" : name);
      FLUX_CHECK(!p.spec.name.empty(), in, ": tensor '", name, "' is not part of a T5 encoder (no llama.cpp name)");
      p.spec.dtype = t5_gguf_type(p.spec.name, t.shape(), type);
    } else if (layout == Layout::sdcpp) {
      p.spec.dtype = sdcpp_converts(name, t.shape(), type) ? type : storable(t.dtype());
    } else if (model == Model::flux) {
      p.spec.dtype = city96_type(name, t.shape(), type);
    } else {
      p.spec.dtype = t.ndim() <= 1 ? DType::f32 : whole_blocks(t.shape(), type) ? type : DType::f16;
    }
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(), [](const Planned& a, const Planned& b) { return a.spec.name < b.spec.name; });
  return out;
}

// llama.cpp's order for T5, city96's for FLUX (pipeline/gguf_layout.h); sd.cpp writes none.
std::vector<GgufKV> kv_pairs(const WeightStore& store, Model model, Layout layout, const TypeName& type) {
  if (model == Model::t5) return t5_gguf_kv(T5Config::resolve(store, ""), type.file_type);
  if (layout == Layout::sdcpp) return {};
  return city96_kv(model == Model::flux, type.file_type);
}

// Streams one tensor: the source bytes when the dtype stays, else f32 row chunks quantized to the target.
void write_tensor(GgufWriter& w, const Tensor& src, DType dtype, bool search, std::vector<uint8_t>& buffer) {
  if (src.dtype() == dtype) {
    w.write(src.raw(), src.nbytes());
    return;
  }
  const int64_t n = row_length(src.shape());
  if (n == 0 || src.numel() == 0) return;
  const int64_t n_rows = src.numel() / n;
  const Tensor rows = src.reshape({n_rows, n});
  const std::vector<float> importance = search ? unit_importance(n) : std::vector<float>();
  const int64_t chunk = std::max<int64_t>(1, (int64_t{32} << 20) / (n * 4));  // ~32 MiB of f32 per chunk
  for (int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
    const int64_t r1 = std::min(n_rows, r0 + chunk);
    const Tensor part = rows.slice_rows(r0, r1).to(DType::f32);
    buffer.resize(dtype_nbytes(dtype, n) * static_cast<size_t>(r1 - r0));
    const size_t bytes = quantize_rows(dtype, part.data<float>(), buffer.data(), r1 - r0, n,
                                       importance.empty() ? nullptr : importance.data());
    w.write(buffer.data(), bytes);
  }
}

int run_quantize(const QuantizeOptions& o) {
  const TypeName& type = parse_gguf_file_type(o.type);
  FLUX_CHECK(o.layout.empty() || o.layout == "city96" || o.layout == "sdcpp",
             "--layout: expected city96 or sdcpp, got '", o.layout, "'");
  const Layout layout = o.layout == "sdcpp" ? Layout::sdcpp : Layout::city96;
  FLUX_CHECK(o.quantizer.empty() || o.quantizer == "ref" || o.quantizer == "search",
             "--quantizer: expected ref or search, got '", o.quantizer, "'");
  const bool search = o.quantizer.empty() ? is_k_quant(type.dtype) || layout == Layout::sdcpp : o.quantizer == "search";
  FLUX_CHECK(search || !is_k_quant(type.dtype), "--quantizer ref: ggml's reference quantizers for ", type.name,
             " are not implemented; use --quantizer search (what sd-cli and llama-quantize write)");

  WeightStore store = WeightStore::open(o.in);
  const Model model = detect(store, o.any_tensors, o.in);
  FLUX_CHECK(model != Model::t5 || o.layout != "sdcpp", o.in,
             ": a T5 encoder is written in llama.cpp's layout; --layout sdcpp is for the FLUX transformer");
  const std::vector<Planned> planned = plan(store, model, layout, type.dtype, o.in);

  std::vector<GgufTensorSpec> specs;
  for (const Planned& p : planned) specs.push_back(p.spec);
  GgufWriter w(o.out, kv_pairs(store, model, layout, type), specs, {.pad_last_tensor = layout == Layout::city96});
  const char* what = model == Model::flux ? "FLUX transformer" : model == Model::t5 ? "T5 encoder" : "tensor set";
  std::fprintf(stderr, "quantize: %s %s, %zu tensors -> %s (%s layout, %s quantizer)\n", what, o.in.c_str(),
               planned.size(), type.name,
               model == Model::t5 ? "llama.cpp"
               : o.layout.empty() ? "city96"
                                  : o.layout.c_str(),
               search ? "search" : "ref");
  std::vector<uint8_t> buffer;
  std::map<std::string, int> counts;
  size_t in_bytes = 0, out_bytes = 0;
  for (size_t i = 0; i < planned.size(); ++i) {
    const Planned& p = planned[i];
    const Tensor src = store.get(p.source);
    std::fprintf(stderr, "[%zu/%zu] %s %s %s -> %s\n", i + 1, planned.size(), p.spec.name.c_str(),
                 src.shape().str().c_str(), dtype_name(src.dtype()), dtype_name(p.spec.dtype));
    write_tensor(w, src, p.spec.dtype, search, buffer);
    ++counts[ggml_type_name(ggml_type_of(p.spec.dtype))];
    in_bytes += src.nbytes();
    out_bytes += w.tensor_bytes(i);
  }
  w.finish();
  std::string summary;
  for (const auto& [name, n] : counts) summary += str_cat(summary.empty() ? "" : ", ", name, " x", n);
  std::printf("wrote %s: %zu tensors (%s), %.1f MiB from %.1f MiB\n", o.out.c_str(), planned.size(), summary.c_str(),
              out_bytes / 1048576.0, in_bytes / 1048576.0);
  return 0;
}

const CommandRegistrar reg(
    {"quantize", "quantize a FLUX transformer or T5 encoder (safetensors) to GGUF", [](CLI::App& sub) {
       auto o = std::make_shared<QuantizeOptions>();
       sub.add_option("in", o->in, "FLUX transformer (BFL names) or T5 encoder: .safetensors, index or folder")
           ->required();
       sub.add_option("out", o->out, "output .gguf file")->required();
       sub.add_option("--type", o->type, "q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, q3_K, q2_K, f16 or bf16")
           ->required();
       sub.add_option("--layout", o->layout,
                      "city96 (ComfyUI-GGUF, default) or sdcpp (stable-diffusion.cpp sd-cli -M convert)");
       sub.add_option("--quantizer", o->quantizer,
                      "ref (ggml *_ref, what gguf-py writes; legacy types) or search (ggml's importance search with "
                      "unit weights, what sd-cli writes); default: search for k-quants and --layout sdcpp, else ref");
       sub.add_flag("--any-tensors", o->any_tensors, "quantize any tensor set without model detection (tests)")
           ->group("");
       return [o] { return run_quantize(*o); };
     }});

}  // namespace
}  // namespace flux::cli
