#include "weight_files.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "io/safetensors.h"
#include "test_util.h"

namespace flux::test {
namespace {

// Temp folders of the tests, removed when the test program ends.
class TempDirs : public ::testing::Environment {
 public:
  static std::string make(const std::string& tag) {
    static TempDirs* env = static_cast<TempDirs*>(::testing::AddGlobalTestEnvironment(new TempDirs));
    env->dirs_.push_back(temp_dir(tag));
    return env->dirs_.back();
  }
  void TearDown() override {
    for (const std::string& d : dirs_) std::filesystem::remove_all(d);
  }

 private:
  std::vector<std::string> dirs_;
};

}  // namespace

std::string cleaned_temp_dir(const std::string& tag) { return TempDirs::make(tag); }

Tensors read_all(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  Tensors out;
  for (const SafetensorsEntry& e : file.entries()) out.emplace_back(e.name, file.tensor(e));
  return out;
}

std::string write_temp(const std::string& tag, const Tensors& tensors, const std::map<std::string, std::string>& meta) {
  const std::string path = cleaned_temp_dir(tag) + "/model.safetensors";
  write_safetensors(path, tensors, meta);
  return path;
}

}  // namespace flux::test
