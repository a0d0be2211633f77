// Small random-weight FLUX.1 model sets in the real file layouts (for tests, demos and server benchmarks):
// the diffusers folder (model_index.json, per-component config.json and safetensors with diffusers names,
// the transformer sharded with an index, its q/k/v split and norm_out halves swapped as diffusers' conversion
// script does) or BFL single files (flux1-*.safetensors, ae.safetensors, clip_l.safetensors, t5xxl.safetensors,
// each carrying its config in __metadata__), plus the tokenizer files copied into tokenizer/ and tokenizer_2/
// (or test tokenizers written there when no source is given).
// Vocabularies keep their real sizes (CLIP 49408, T5 32128) so the real tokenizers apply. Deterministic per seed.
// Size `full` has the real shapes (FLUX.1 12 B, T5-XXL 4.8 B, CLIP-L, the real VAE); with a TestModelType it writes
// the files users download under their usual names, streamed in row chunks (never a whole model in memory).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "pipeline/pipeline.h"
#include "tensor/dtype.h"

namespace flux {

enum class TestModelLayout { diffusers, single_file };
enum class TestModelSize {
  tiny,    // the golden configs (shared/golden/MANIFEST.md): transformer hidden 64, 2+2 blocks
  small,   // hidden 128, 2+4 blocks
  medium,  // hidden 1024, 8+20 blocks (2.5 GB in f32): a 256x256 schnell generation takes >= 10 s on 2 cores
  full,    // the real shapes: transformer hidden 3072, 19+38 blocks; T5-XXL; CLIP-L; VAE ch 128 (bf16: 33 GB)
};

// Which files: `uniform` = every component in TestModelOptions::dtype under the test names (flux1-schnell,
// ae, clip_l, t5xxl .safetensors); the others mirror the downloads (single-file layout; diffusers only for
// bf16), CLIP-L in f16 and the VAE in f32 (clip_l.safetensors, BFL's ae.safetensors) in every set:
//   bf16: flux1-schnell.safetensors (BF16), t5xxl_fp16.safetensors (F16)
//   fp8:  flux1-schnell-fp8-e4m3fn.safetensors (2-D block weights F8_E4M3, the rest BF16),
//         t5xxl_fp8_e4m3fn.safetensors (2-D layer weights F8_E4M3, embedding, norms and bias table F16)
//   q8_0: flux1-schnell-Q8_0.gguf (city96 layout), t5-v1_1-xxl-encoder-Q8_0.gguf (llama.cpp layout)
//   q4_K: flux1-schnell-Q4_K_S.gguf, t5-v1_1-xxl-encoder-Q4_K_M.gguf (every 2-D weight Q4_K)
enum class TestModelType { uniform, bf16, fp8, q8_0, q4_K };

struct TestModelOptions {
  Variant variant = Variant::schnell;
  TestModelLayout layout = TestModelLayout::diffusers;
  TestModelSize size = TestModelSize::tiny;
  // Source: a folder like shared/tokenizers (clip-l/, t5/) or a diffusers folder; empty: small test
  // tokenizers of our own making (text/test_tokenizers.h).
  std::string tokenizers;
  uint64_t seed = 0;
  DType dtype = DType::f32;  // f32, bf16 or f16 for the weights (TestModelType::uniform)
  TestModelType type = TestModelType::uniform;
  bool verbose = false;  // a line per file written (MB/s) on stderr
};

TestModelSize parse_test_model_size(const std::string& s);      // Error naming the value
TestModelLayout parse_test_model_layout(const std::string& s);  // Error naming the value
Variant parse_variant(const std::string& s);                    // Error naming the value
TestModelType parse_test_model_type(const std::string& s);      // Error naming the value

// One file of a model set: path relative to the set's folder, its tensors (names, torch shapes, stored dtypes),
// in the order the file lists them.
struct TestModelFile {
  std::string path;
  std::vector<std::tuple<std::string, Shape, DType>> tensors;
};
// The weight files make_test_model would write, without writing anything (configs and tokenizers left out).
std::vector<TestModelFile> plan_test_model(const TestModelOptions& options);

// Writes the model set into `dir` (created if needed). Returns the total bytes of weights written.
uint64_t make_test_model(const std::string& dir, const TestModelOptions& options);

}  // namespace flux
