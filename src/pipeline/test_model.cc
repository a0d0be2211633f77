// Random-weight model sets: the files of each layout and type (plan), written component by component from the
// parameter tables (test_model_tables.h) by the streaming writers (test_model_write.h).
#include "pipeline/test_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "base/error.h"
#include "io/safetensors.h"
#include "pipeline/gguf_layout.h"
#include "pipeline/sampling.h"
#include "pipeline/test_model_tables.h"
#include "pipeline/test_model_write.h"
#include "text/t5_tokenizer.h"
#include "text/test_tokenizers.h"

namespace flux {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace test_model;  // NOLINT: the tables' types and functions throughout

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(1) << "\n";
  FLUX_CHECK(out.good(), "make-test-model: cannot write ", path.string());
}

std::map<std::string, std::string> meta(const json& config) {
  return {{"format", "pt"}, {"generator", "fluxcpp make-test-model"}, {"config", config.dump()}};
}

void copy_files(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from))
    if (e.is_regular_file()) fs::copy_file(e.path(), to / e.path().filename(), fs::copy_options::overwrite_existing);
}

// ---- the files of a set ----
enum Component { kFlux, kAe, kClip, kT5, kComponents };

struct FileJob {
  std::string path;  // relative to the set's folder
  Component component;
  bool gguf = false;
  std::map<std::string, std::string> metadata;  // safetensors
  std::vector<GgufKV> kv;                       // GGUF
  std::vector<OutTensor> tensors;
};

struct Plan {
  Sizes sizes;
  std::array<Params, kComponents> params;
  std::vector<FileJob> files;
  bool search_quantizer = false;
};

DType quant_type(TestModelType t) { return t == TestModelType::q8_0 ? DType::q8_0 : DType::q4_K; }
bool is_gguf(TestModelType t) { return t == TestModelType::q8_0 || t == TestModelType::q4_K; }

// Stored dtypes per component and type (test_model.h); `name` is the BFL / HF name, `gguf_name` the T5's.
DType stored_dtype(const TestModelOptions& o, Component c, const std::string& name, const Shape& shape,
                   const std::string& gguf_name = "") {
  if (o.type == TestModelType::uniform) return o.dtype;
  if (o.layout == TestModelLayout::diffusers) return DType::bf16;
  const bool matrix = shape.ndim() == 2;
  switch (c) {
    case kAe:
      return DType::f32;
    case kClip:
      return DType::f16;
    case kFlux:
      if (o.type == TestModelType::bf16) return DType::bf16;
      if (o.type == TestModelType::fp8)
        return matrix && (name.starts_with("double_blocks.") || name.starts_with("single_blocks.")) ? DType::f8_e4m3
                                                                                                    : DType::bf16;
      return city96_type(name, shape, quant_type(o.type));
    case kT5:
      if (o.type == TestModelType::bf16) return DType::f16;
      if (o.type == TestModelType::fp8)
        return matrix && name.starts_with("encoder.block.") && !name.ends_with("relative_attention_bias.weight")
                   ? DType::f8_e4m3
                   : DType::f16;
      return t5_gguf_type(gguf_name, shape, quant_type(o.type));
    default:
      break;
  }
  fail("make-test-model: unknown component");
}

std::vector<OutTensor> typed(const TestModelOptions& o, Component c, std::vector<OutTensor> tensors) {
  for (OutTensor& t : tensors) t.dtype = stored_dtype(o, c, t.name, t.shape);
  return tensors;
}

std::string flux_file_name(const TestModelOptions& o) {
  const std::string stem = o.variant == Variant::dev ? "flux1-dev" : "flux1-schnell";
  switch (o.type) {
    case TestModelType::fp8:
      return stem + "-fp8-e4m3fn.safetensors";
    case TestModelType::q8_0:
      return stem + "-Q8_0.gguf";
    case TestModelType::q4_K:
      return stem + "-Q4_K_S.gguf";
    default:
      return stem + ".safetensors";
  }
}
std::string t5_file_name(TestModelType t) {
  switch (t) {
    case TestModelType::bf16:
      return "t5xxl_fp16.safetensors";
    case TestModelType::fp8:
      return "t5xxl_fp8_e4m3fn.safetensors";
    case TestModelType::q8_0:
      return "t5-v1_1-xxl-encoder-Q8_0.gguf";
    case TestModelType::q4_K:
      return "t5-v1_1-xxl-encoder-Q4_K_M.gguf";
    default:
      return "t5xxl.safetensors";
  }
}

// A GGUF file of one component: tensors renamed by `rename`, typed, in name order (as the converters write them).
FileJob gguf_job(const std::string& path, Component c, const Params& params, std::vector<GgufKV> kv,
                 const std::function<std::string(const std::string&)>& rename,
                 const std::function<DType(const std::string&, const std::string&, const Shape&)>& type) {
  FileJob job{path, c, true, {}, std::move(kv), {}};
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string name = rename(params[i].name);
    FLUX_CHECK(!name.empty(), "make-test-model: no GGUF name for ", params[i].name);
    job.tensors.push_back(test_model::whole(params, i, name, type(params[i].name, name, params[i].shape)));
  }
  std::sort(job.tensors.begin(), job.tensors.end(),
            [](const OutTensor& a, const OutTensor& b) { return a.name < b.name; });
  return job;
}

Plan make_plan(const TestModelOptions& o) {
  const bool release = o.type != TestModelType::uniform;
  FLUX_CHECK(!release || o.layout == TestModelLayout::single_file || o.type == TestModelType::bf16,
             "make-test-model --type ", o.type == TestModelType::fp8 ? "fp8" : "q8_0/q4_K",
             ": the downloads of this type are single files; use --layout single-file");
  Plan plan;
  plan.sizes = sizes_for(o.size);
  const Sizes& s = plan.sizes;
  const bool dev = o.variant == Variant::dev;
  plan.params[kFlux] = flux_weights(s, dev);
  plan.params[kAe] = ae_weights(s);
  plan.params[kClip] = clip_weights(s);
  plan.params[kT5] = t5_weights(s);
  plan.search_quantizer = o.type == TestModelType::q4_K;  // ggml's k-quant quantizers all search
  // Real downloads carry no config (the loaders infer it from shapes); small sizes need theirs (head counts).
  auto st_meta = [&](const json& config) {
    return release && o.size == TestModelSize::full ? std::map<std::string, std::string>{{"format", "pt"}}
                                                    : meta(config);
  };
  auto safetensors = [&](const std::string& path, Component c, std::map<std::string, std::string> m) {
    plan.files.push_back({path, c, false, std::move(m), {}, typed(o, c, as_stored(plan.params[c]))});
  };

  if (o.layout == TestModelLayout::single_file) {
    if (is_gguf(o.type)) {
      const GgufFileType& ft = parse_gguf_file_type(o.type == TestModelType::q8_0 ? "q8_0" : "q4_K");
      plan.files.push_back(gguf_job(
          flux_file_name(o), kFlux, plan.params[kFlux], city96_kv(true, ft.file_type),
          [](const std::string& n) { return n; },
          [&](const std::string& n, const std::string&, const Shape& shape) {
            return stored_dtype(o, kFlux, n, shape);
          }));
      T5Config c;
      c.d_model = s.t5_d, c.d_kv = s.t5_kv, c.num_heads = s.t5_heads, c.d_ff = s.t5_ff, c.num_layers = s.t5_layers;
      plan.files.push_back(gguf_job(t5_file_name(o.type), kT5, plan.params[kT5], t5_gguf_kv(c, ft.file_type),
                                    t5_gguf_name, [&](const std::string& n, const std::string& g, const Shape& shape) {
                                      return stored_dtype(o, kT5, n, shape, g);
                                    }));
    } else {
      safetensors(flux_file_name(o), kFlux, st_meta(flux_config(s, dev)));
      safetensors(t5_file_name(o.type), kT5, st_meta(t5_config(s)));
    }
    safetensors("ae.safetensors", kAe, st_meta(ae_config(s)));
    safetensors("clip_l.safetensors", kClip, st_meta(clip_config(s)));
    return plan;
  }
  // Diffusers: the transformer in two shards (plus an index), the VAE renamed.
  const std::vector<OutTensor> flux = typed(o, kFlux, flux_to_diffusers(plan.params[kFlux], s));
  const size_t half = flux.size() / 2;
  plan.files.push_back({"transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
                        kFlux,
                        false,
                        {{"format", "pt"}},
                        {},
                        {flux.begin(), flux.begin() + static_cast<std::ptrdiff_t>(half)}});
  plan.files.push_back({"transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
                        kFlux,
                        false,
                        {{"format", "pt"}},
                        {},
                        {flux.begin() + static_cast<std::ptrdiff_t>(half), flux.end()}});
  std::vector<OutTensor> vae;
  for (const OutTensor& t : typed(o, kAe, as_stored(plan.params[kAe])))
    vae.push_back(ae_to_diffusers(t, static_cast<int64_t>(s.ae_mult.size())));
  plan.files.push_back({"vae/diffusion_pytorch_model.safetensors", kAe, false, {{"format", "pt"}}, {}, vae});
  safetensors("text_encoder/model.safetensors", kClip, {{"format", "pt"}});
  safetensors("text_encoder_2/model.safetensors", kT5, {{"format", "pt"}});
  return plan;
}

uint64_t data_bytes(const std::vector<OutTensor>& tensors) {
  uint64_t n = 0;
  for (const OutTensor& t : tensors) n += t.shape.ndim() == 0 ? 0 : dtype_nbytes(t.dtype, t.shape.numel());
  return n;
}

void write_diffusers_configs(const fs::path& dir, const Sizes& s, bool dev, const std::vector<FileJob>& files) {
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
  write_json(dir / "transformer" / "config.json", flux_diffusers_config(s, dev));
  json map = json::object();
  uint64_t total = 0;
  for (const FileJob& f : files) {
    if (f.component != kFlux) continue;
    for (const OutTensor& t : f.tensors) map[t.name] = fs::path(f.path).filename().string();
    total += data_bytes(f.tensors);
  }
  write_json(dir / "transformer" / "diffusion_pytorch_model.safetensors.index.json",
             {{"metadata", {{"total_size", total}}}, {"weight_map", map}});
  write_json(dir / "vae" / "config.json", ae_diffusers_config(s));
  write_json(dir / "text_encoder" / "config.json", clip_config(s));
  write_json(dir / "text_encoder_2" / "config.json", t5_config(s));
}

}  // namespace

TestModelSize parse_test_model_size(const std::string& s) {
  if (s == "tiny") return TestModelSize::tiny;
  if (s == "small") return TestModelSize::small;
  if (s == "medium") return TestModelSize::medium;
  if (s == "full") return TestModelSize::full;
  fail("--size: expected tiny, small, medium or full, got '", s, "'");
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
TestModelType parse_test_model_type(const std::string& s) {
  if (s == "uniform") return TestModelType::uniform;
  if (s == "bf16") return TestModelType::bf16;
  if (s == "fp8") return TestModelType::fp8;
  if (s == "q8_0") return TestModelType::q8_0;
  if (s == "q4_K") return TestModelType::q4_K;
  fail("--type: expected bf16, fp8, q8_0 or q4_K, got '", s, "'");
}

std::vector<TestModelFile> plan_test_model(const TestModelOptions& options) {
  std::vector<TestModelFile> out;
  for (const FileJob& f : make_plan(options).files) {
    TestModelFile file{f.path, {}};
    for (const OutTensor& t : f.tensors) file.tensors.emplace_back(t.name, t.shape, t.dtype);
    out.push_back(std::move(file));
  }
  return out;
}

uint64_t make_test_model(const std::string& dir_name, const TestModelOptions& o) {
  FLUX_CHECK(o.dtype == DType::f32 || o.dtype == DType::bf16 || o.dtype == DType::f16,
             "make-test-model: dtype expected f32, bf16 or f16, got ", dtype_name(o.dtype));
  const TokenizerDirs tok = o.tokenizers.empty() ? TokenizerDirs{} : find_tokenizer_dirs(o.tokenizers);
  const fs::path dir(dir_name);
  const Plan plan = make_plan(o);
  for (const FileJob& f : plan.files) fs::create_directories((dir / f.path).parent_path());
  if (o.layout == TestModelLayout::diffusers)
    write_diffusers_configs(dir, plan.sizes, o.variant == Variant::dev, plan.files);

  // One value stream per component (seeds as they always were), so each is the same whatever the layout; made
  // when its first file is written and dropped after its last.
  uint64_t total = 0;
  for (int c = 0; c < kComponents; ++c) {
    const Params& params = plan.params[static_cast<size_t>(c)];
    const uint64_t seed = o.seed * 4 + static_cast<uint64_t>(c) + 1;
    const test_model::WriteOptions write_options{plan.search_quantizer, o.verbose, seed};
    std::unique_ptr<test_model::ParamValues> values;
    for (const FileJob& f : plan.files) {
      if (f.component != c) continue;
      if (!values)
        values = o.size == TestModelSize::full ? test_model::streamed_values(params, seed)
                                               : test_model::torch_values(params, seed);
      const std::string path = (dir / f.path).string();
      total +=
          f.gguf ? test_model::write_gguf_streamed(path, f.kv, f.tensors, params, *values, write_options)
                 : test_model::write_safetensors_streamed(path, f.tensors, params, *values, f.metadata, write_options);
    }
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
