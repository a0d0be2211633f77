// Small random-weight FLUX.1 model sets in the real file layouts (for tests, demos and server benchmarks):
// the diffusers folder (model_index.json, per-component config.json and safetensors with diffusers names,
// the transformer sharded with an index, its q/k/v split and norm_out halves swapped as diffusers' conversion
// script does) or BFL single files (flux1-*.safetensors, ae.safetensors, clip_l.safetensors, t5xxl.safetensors,
// each carrying its config in __metadata__), plus the tokenizer files copied into tokenizer/ and tokenizer_2/
// (or test tokenizers written there when no source is given).
// Vocabularies keep their real sizes (CLIP 49408, T5 32128) so the real tokenizers apply. Deterministic per seed.
#pragma once

#include <cstdint>
#include <string>

#include "pipeline/pipeline.h"
#include "tensor/dtype.h"

namespace flux {

enum class TestModelLayout { diffusers, single_file };
enum class TestModelSize {
  tiny,    // the golden configs (shared/golden/MANIFEST.md): transformer hidden 64, 2+2 blocks
  small,   // hidden 128, 2+4 blocks
  medium,  // hidden 1024, 8+20 blocks (2.5 GB in f32): a 256x256 schnell generation takes >= 10 s on 2 cores
};

struct TestModelOptions {
  Variant variant = Variant::schnell;
  TestModelLayout layout = TestModelLayout::diffusers;
  TestModelSize size = TestModelSize::tiny;
  // Source: a folder like shared/tokenizers (clip-l/, t5/) or a diffusers folder; empty: small test
  // tokenizers of our own making (text/test_tokenizers.h).
  std::string tokenizers;
  uint64_t seed = 0;
  DType dtype = DType::f32;  // f32, bf16 or f16 for the weights
};

TestModelSize parse_test_model_size(const std::string& s);      // Error naming the value
TestModelLayout parse_test_model_layout(const std::string& s);  // Error naming the value
Variant parse_variant(const std::string& s);                    // Error naming the value

// Writes the model set into `dir` (created if needed). Returns the total bytes of weights written.
uint64_t make_test_model(const std::string& dir, const TestModelOptions& options);

}  // namespace flux
