// WeightStore: the tensors of a model, by name, from one or more safetensors files (sharded sets too) or GGUF
// files (told apart by their magic). Models bind their weights through require(): it checks dtype class and
// shape, and records every problem instead of throwing at the first, so finish() can name ALL missing,
// mis-shaped and unused tensors at once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace flux {

class WeightStore {
 public:
  WeightStore() = default;
  // A .safetensors or .gguf file, a *.index.json, or a folder (see resolve_safetensors_files).
  static WeightStore open(const std::string& path);
  // A safetensors or GGUF file (by its magic, whatever its name).
  void add_file(const std::string& path);
  // Makes "prefix" + name answer to name (ComfyUI checkpoints nest keys, e.g. "model.diffusion_model.").
  // Only names that start with the prefix are renamed.
  void strip_prefix(const std::string& prefix);
  // Renames every tensor to map(name) (models apply their checkpoint-name tables with it). Two tensors given
  // the same name is an Error naming both.
  void rename(const std::function<std::string(const std::string&)>& map);

  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;
  // Without any check or bookkeeping; throws Error if absent.
  Tensor get(const std::string& name) const;

  // Binding. Returns the tensor as stored (zero-copy): a float or a GGUF block-quantized dtype (the caller
  // that takes it handles quantized weights; one that cannot calls require_f32), or an undefined Tensor after
  // recording a problem. An empty `shape` skips the shape check. Marks the name used.
  Tensor require(const std::string& name, const Shape& shape);
  // As require(), converted to f32 (small parameters: norms, biases, embeddings; quantized tensors dequantized).
  Tensor require_f32(const std::string& name, const Shape& shape);
  // As require(), but absence is not a problem (returns undefined).
  Tensor optional(const std::string& name, const Shape& shape);
  // Marks names used without binding them (e.g. buffers a model recomputes).
  void ignore(const std::string& name);

  // Throws one Error listing every missing / mis-shaped tensor, and (if strict) every unused one,
  // prefixed with `what` (e.g. "flux transformer (model.safetensors)").
  void finish(const std::string& what, bool strict_unused = true);
  std::vector<std::string> missing() const { return missing_; }
  std::vector<std::string> unused() const;

  // safetensors __metadata__ and GGUF KV pairs (values as GgufValue::str(): numbers exact, arrays summarised).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::string source_of(const std::string& name) const;  // the file that holds it
  std::vector<std::string> files() const;
  size_t total_bytes() const;

 private:
  // One tensor: the file that holds it and its entry there (exactly one of st / gguf is set).
  struct Ref {
    size_t file = 0;
    const SafetensorsEntry* st = nullptr;
    const GgufTensorInfo* gguf = nullptr;
    const Shape& shape() const { return st ? st->shape : gguf->shape; }
    DType dtype() const { return st ? st->dtype : gguf->dtype; }
  };
  struct File {
    std::unique_ptr<SafetensorsFile> st;
    std::unique_ptr<GgufFile> gguf;
    const std::string& path() const { return st ? st->path() : gguf->path(); }
    size_t data_bytes() const { return st ? st->data_bytes() : gguf->data_bytes(); }
  };
  Tensor tensor_of(const Ref& ref) const;
  std::vector<File> files_;
  std::map<std::string, Ref> tensors_;
  std::map<std::string, std::string> metadata_;
  std::set<std::string> used_;
  std::vector<std::string> missing_;  // "name (expected shape ..., got ...)" or "name"
  std::set<std::string> absent_;      // the entries of missing_ that are absent names (not mis-shaped)
};

}  // namespace flux
