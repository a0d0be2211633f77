// Test helpers for rewriting model weight files: read every tensor of a file, write a modified copy into a
// temp folder that is removed when the test program ends.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace flux::test {

using Tensors = std::vector<std::pair<std::string, Tensor>>;

// A fresh temp folder, removed when the test program ends.
std::string cleaned_temp_dir(const std::string& tag);
// Every tensor of a safetensors file, in file order (views over its mapping).
Tensors read_all(const std::string& path);
// Writes `tensors` to model.safetensors in a fresh temp folder (with `meta` as __metadata__); returns its path.
std::string write_temp(const std::string& tag, const Tensors& tensors, const std::map<std::string, std::string>& meta);

}  // namespace flux::test
