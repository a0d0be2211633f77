// make-test-model's writers (pipeline-internal): a model component is a list of parameters (name, shape, N(mean,
// std) or constant), a file is a list of output tensors, each the concatenation of row ranges of one parameter in
// a stored dtype (so diffusers' q/k/v splits and swapped halves are ranges too). Files are streamed in row chunks:
// nothing larger than a chunk (~32 MiB of f32) is ever held, whatever the model size.
//
// Values come from one of two sources:
// - torch_values: one TorchGenerator stream over the parameters in order, held in memory (tiny .. medium; the
//   values the test models always had);
// - streamed_values: each row from its own counter-based generator (splitmix64 of seed, parameter, row, index;
//   an Irwin-Hall sum of four 16-bit uniforms, scaled to unit variance), so any row range is computed on its own
//   (full size: 12 B parameters, ~1 GB/s per core).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "tensor/tensor.h"

namespace flux::test_model {

struct Param {
  std::string name;  // BFL / HF name
  Shape shape;       // rows = shape[0], a row = the rest
  float std = 0;     // 0: every value is `mean`
  float mean = 0;
  int64_t n_rows() const { return shape.ndim() == 0 ? 1 : shape[0]; }
  int64_t row_length() const { return shape.ndim() == 0 ? 1 : shape.numel() / shape[0]; }
};
using Params = std::vector<Param>;

struct Piece {
  size_t param;  // index into the component's Params
  int64_t begin, end;
};
struct OutTensor {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  std::vector<Piece> pieces;  // concatenated in order; their elements add up to shape.numel()
};
// The whole of params[i] under `name`, reshaped to `shape` (empty: the param's shape).
OutTensor whole(const Params& params, size_t i, const std::string& name, DType dtype, Shape shape = {});

class ParamValues {
 public:
  virtual ~ParamValues() = default;
  // Rows [begin, end) of params[param] as f32, row after row.
  virtual void rows(size_t param, int64_t begin, int64_t end, float* out) const = 0;
};
std::unique_ptr<ParamValues> torch_values(const Params& params, uint64_t seed);
std::unique_ptr<ParamValues> streamed_values(const Params& params, uint64_t seed);

// float8 e4m3fn of f32, round to nearest even, saturating to +-448 (no infinities in e4m3fn).
uint8_t f32_to_f8e4m3(float f);

struct WriteOptions {
  bool search_quantizer = false;  // k-quants other than Q4_K: ggml's importance search with unit weights
  bool verbose = false;           // a line per file with its MB/s on stderr
  uint64_t block_seed = 0;        // Q4_K weights are random valid blocks drawn from this seed, not quantized
};

// safetensors: header in write_safetensors' form (data by decreasing element size), then the data.
uint64_t write_safetensors_streamed(const std::string& path, const std::vector<OutTensor>& tensors,
                                    const Params& params, const ParamValues& values,
                                    const std::map<std::string, std::string>& metadata, const WriteOptions& options);
// GGUF (io/gguf_writer.h), tensors in the given order; quantized dtypes through tensor/quantize.h, except Q4_K:
// random valid blocks of the parameter's std (ggml's k-quant search is ~10 MB/s on two cores).
uint64_t write_gguf_streamed(const std::string& path, std::vector<GgufKV> kv, const std::vector<OutTensor>& tensors,
                             const Params& params, const ParamValues& values, const WriteOptions& options);

}  // namespace flux::test_model
