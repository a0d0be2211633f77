// `fluxcpp make-test-model DIR`: a small random-weight FLUX.1 model set in the real layouts (diffusers folder or
// BFL single files) with the given tokenizers copied in (or test tokenizers of its own making), for tests, demos
// and server benchmarks. See
// src/pipeline/test_model.h for the sizes. Random weights give noise-like pictures, by design.
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
       sub.add_option("--layout", o->layout, "diffusers or single-file");
       sub.add_option("--size", o->size, "tiny (golden configs), small, or medium (>= 10 s per 256x256 image)");
       sub.add_option("--tokenizers", o->tokenizers,
                      "tokenizer source: a folder with clip-l/ + t5/ (like shared/tokenizers) or a diffusers folder; "
                      "without it, small test tokenizers of fluxcpp's own making are written");
       sub.add_option("--dtype", o->dtype, "weight dtype: f32, bf16 or f16");
       sub.add_option("--seed", o->seed, "random seed of the weights");
       return [o] {
         TestModelOptions t;
         t.variant = parse_variant(o->variant);
         t.layout = parse_test_model_layout(o->layout);
         t.size = parse_test_model_size(o->size);
         t.tokenizers = o->tokenizers;
         t.seed = o->seed;
         t.dtype = parse_dtype(o->dtype);
         const uint64_t bytes = make_test_model(o->dir, t);
         std::printf("wrote a %s %s FLUX.1-%s test model (%s, %.1f MiB of random weights) to %s\n", o->size.c_str(),
                     o->layout.c_str(), o->variant.c_str(), o->dtype.c_str(), bytes / 1048576.0, o->dir.c_str());
         return 0;
       };
     }});

}  // namespace
}  // namespace flux::cli
