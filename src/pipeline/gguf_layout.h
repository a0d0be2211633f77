// The tensor-type and KV rules of the FLUX / T5 GGUF files people download, shared by `fluxcpp quantize` (which
// converts real checkpoints) and make-test-model (which writes random ones at full size):
// - city96 (ComfyUI-GGUF tools/convert.py + lcpp.patch, arch flux): 1-D tensors and the input layers F32, the
//   small embedders' output layers F16, the rest the file's type, F16 where rows are not whole blocks.
// - sdcpp (stable-diffusion.cpp ModelLoader::tensor_should_be_converted): biases, scales, embedders and the
//   final layer keep the source type; so do rows that are not whole blocks.
// - T5 (llama.cpp convert_hf_to_gguf.py T5EncoderModel + llama-quant.cpp): 1-D tensors and attn_rel_b F32,
//   rows that are not whole blocks F16, t5encoder.* KV pairs.
// Layouts and citations: ../shared/golden/gguf/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "models/t5_encoder.h"
#include "tensor/tensor.h"

namespace flux {

// A --type name, its dtype and llama.cpp's LlamaFileType (gguf-py constants.py; k-quants: the _S variants).
struct GgufFileType {
  const char* name;
  DType dtype;
  uint32_t file_type;
};
// q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, q3_K, q2_K, f16, bf16.
const std::vector<GgufFileType>& gguf_file_types();
// Throws Error listing the accepted names.
const GgufFileType& parse_gguf_file_type(const std::string& s);

bool is_k_quant(DType d);
// The last dim (1 for a scalar) holds whole blocks of `d`.
bool whole_blocks(const Shape& s, DType d);

// city96: the type of FLUX tensor `name` (BFL name) in a file of type `type`.
DType city96_type(const std::string& name, const Shape& shape, DType type);
// sdcpp: whether tensor `name` is converted to `type` (else it keeps its source dtype).
bool sdcpp_converts(const std::string& name, const Shape& shape, DType type);
// llama.cpp T5: the type of tensor `gguf_name` (llama.cpp name, e.g. "enc.blk.0.attn_q.weight").
DType t5_gguf_type(const std::string& gguf_name, const Shape& shape, DType type);

// KV pairs in the writers' order. city96: general.architecture "flux" (when `flux`), quantization version,
// file type. T5: llama.cpp's t5encoder.* hyper-parameters, file type, quantization version.
std::vector<GgufKV> city96_kv(bool flux, uint32_t file_type);
std::vector<GgufKV> t5_gguf_kv(const T5Config& c, uint32_t file_type);

}  // namespace flux
