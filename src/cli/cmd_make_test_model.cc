// `fluxcpp make-test-model DIR`: a random-weight FLUX.1 model set in the real layouts (diffusers folder or
// BFL single files) with the given tokenizers copied in (or test tokenizers of its own making), for tests, demos
// and server benchmarks; `--size full --type bf16|fp8|q8_0|q4_K` writes the real shapes in the files users
// download (streamed, MB/s printed). See src/pipeline/test_model.h for the sizes and types. Random weights give
// noise-like pictures, by design.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "base/error.h"
#include "cli/command.h"
#include "pipeline/test_model.h"

namespace flux::cli {
namespace {

struct MakeTestModelOptions {
  std::string dir;
  std::string variant = "schnell";
  std::string layout = "diffusers";
  std::string size = "tiny";
  std::string tokenizers;
  std::string dtype = "f32";
  std::string type;
  uint64_t seed = 0;
};

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  if (s == "f16") return DType::f16;
  fail("--dtype: expected f32, bf16 or f16, got '", s, "'");
}

const CommandRegistrar reg(
    {"make-test-model", "write a small random-weight model set (diffusers or single-file layout)", [](CLI::App& sub) {
       auto o = std::make_shared<MakeTestModelOptions>();
       sub.add_option("dir", o->dir, "output folder")->required();
       sub.add_option("--variant", o->variant, "schnell or dev (dev has guidance_in weights)");
       auto* layout = sub.add_option("--layout", o->layout, "diffusers or single-file");
       sub.add_option("--size", o->size,
                      "tiny (golden configs), small, medium (>= 10 s per 256x256 image) or full (the real shapes)");
       sub.add_option("--tokenizers", o->tokenizers,
                      "tokenizer source: a folder with clip-l/ + t5/ (like shared/tokenizers) or a diffusers folder; "
                      "without it, small test tokenizers of fluxcpp's own making are written");
       sub.add_option("--dtype", o->dtype, "weight dtype of every component: f32, bf16 or f16");
       auto* type = sub.add_option("--type", o->type,
                                   "the files users download instead: bf16 (flux1-schnell + t5xxl_fp16), fp8 "
                                   "(*-fp8-e4m3fn + t5xxl_fp8_e4m3fn), q8_0 or q4_K (city96 / llama.cpp GGUF); "
                                   "CLIP f16 and VAE f32 beside them. Implies --layout single-file");
       sub.add_option("--seed", o->seed, "random seed of the weights");
       return [o, type, layout] {
         TestModelOptions t;
         t.variant = parse_variant(o->variant);
         if (type->count() > 0) {
           t.type = parse_test_model_type(o->type);
           if (layout->count() == 0) o->layout = "single-file";
         }
         t.layout = parse_test_model_layout(o->layout);
         t.size = parse_test_model_size(o->size);
         t.tokenizers = o->tokenizers;
         t.seed = o->seed;
         t.dtype = parse_dtype(o->dtype);
         t.verbose = t.size == TestModelSize::full;
         const auto t0 = std::chrono::steady_clock::now();
         const uint64_t bytes = make_test_model(o->dir, t);
         const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
         std::printf(
             "wrote a %s %s FLUX.1-%s test model (%s, %.1f MiB of random weights) to %s in %.1f s (%.0f MB/s)\n",
             o->size.c_str(), o->layout.c_str(), o->variant.c_str(),
             o->type.empty() ? o->dtype.c_str() : o->type.c_str(), bytes / 1048576.0, o->dir.c_str(), s,
             s > 0 ? bytes / 1e6 / s : 0.0);
         return 0;
       };
     }});

}  // namespace
}  // namespace flux::cli
