#include "pipeline/model_discovery.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "base/log.h"

namespace flux {
namespace {

namespace fs = std::filesystem;

bool has_safetensors(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")) return true;
  }
  return false;
}

// A diffusers component folder: weights = the folder (WeightStore picks the index or the files).
ComponentFiles diffusers_component(const fs::path& root, const std::string& sub) {
  ComponentFiles c;
  const fs::path dir = root / sub;
  if (!has_safetensors(dir)) return c;
  c.weights = dir.string();
  if (fs::exists(dir / "config.json")) c.config = (dir / "config.json").string();
  c.origin = "model folder " + sub + "/";
  return c;
}

// Weight files are safetensors or GGUF (city96 / sd.cpp quantized files, e.g. flux1-dev-Q8_0.gguf).
bool is_weight_file(const std::string& name) { return name.ends_with(".safetensors") || name.ends_with(".gguf"); }

// A single file in `dir` whose name matches one of `names` exactly, else one starting with one of `prefixes`.
std::string find_single_file(const fs::path& dir, const std::vector<std::string>& names,
                             const std::vector<std::string>& prefixes) {
  for (const auto& n : names)
    if (fs::is_regular_file(dir / n)) return (dir / n).string();
  std::vector<std::string> matches;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool prefixed = std::any_of(prefixes.begin(), prefixes.end(), [&](auto& p) { return name.starts_with(p); });
    if (e.is_regular_file() && prefixed && is_weight_file(name)) matches.push_back(e.path().string());
  }
  std::sort(matches.begin(), matches.end());
  if (matches.size() > 1)
    fail("model folder ", dir.string(), ": several files match ", prefixes[0], "*.safetensors / .gguf (", matches[0],
         ", ", matches[1], "); pass the one to use explicitly");
  return matches.empty() ? std::string() : matches[0];
}

ComponentFiles single_component(const std::string& file, const std::string& origin) {
  ComponentFiles c;
  c.weights = file;
  c.origin = origin;
  return c;
}

void override_with(ComponentFiles& c, const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  std::error_code ec;
  FLUX_CHECK(fs::exists(path, ec), flag, ": no such file or folder: ", path);
  c.weights = path;
  c.origin = flag;
  c.config.clear();
  // A diffusers component folder given directly brings its config.json.
  if (fs::is_directory(path, ec) && fs::exists(fs::path(path) / "config.json"))
    c.config = (fs::path(path) / "config.json").string();
}

}  // namespace

ModelFiles discover_model_files(const ModelPaths& paths) {
  ModelFiles m;
  if (!paths.model_dir.empty()) {
    const fs::path root(paths.model_dir);
    std::error_code ec;
    FLUX_CHECK(fs::is_directory(root, ec), "--model: not a folder: ", paths.model_dir);
    if (fs::exists(root / "model_index.json")) {
      m.transformer = diffusers_component(root, "transformer");
      m.vae = diffusers_component(root, "vae");
      m.clip = diffusers_component(root, "text_encoder");
      m.t5 = diffusers_component(root, "text_encoder_2");
      if (fs::exists(root / "scheduler" / "scheduler_config.json"))
        m.scheduler_config = (root / "scheduler" / "scheduler_config.json").string();
    } else {
      const std::string origin = "model folder " + paths.model_dir;
      if (auto f = find_single_file(root, {"flux1-dev.safetensors", "flux1-schnell.safetensors"}, {"flux1-"});
          !f.empty())
        m.transformer = single_component(f, origin);
      if (auto f = find_single_file(root, {"ae.safetensors"}, {"ae."}); !f.empty()) m.vae = single_component(f, origin);
      if (auto f = find_single_file(root, {"clip_l.safetensors"}, {"clip_l"}); !f.empty())
        m.clip = single_component(f, origin);
      // city96's T5 GGUF files are named t5-v1_1-xxl-encoder-<type>.gguf.
      if (auto f = find_single_file(root, {"t5xxl.safetensors", "t5xxl_fp16.safetensors"}, {"t5xxl", "t5-v1_1-xxl"});
          !f.empty())
        m.t5 = single_component(f, origin);
      if (m.transformer.weights.empty() && m.vae.weights.empty() && m.clip.weights.empty() && m.t5.weights.empty())
        fail(
            "--model ", paths.model_dir,
            ": neither a diffusers folder (no model_index.json) nor a folder of single files (no flux1-*.safetensors / "
            ".gguf, ae.safetensors, clip_l.safetensors, t5xxl*.safetensors / .gguf)");
    }
    m.tokenizers = paths.model_dir;
  }
  override_with(m.transformer, paths.diffusion_model, "--diffusion-model");
  override_with(m.vae, paths.vae, "--vae");
  override_with(m.clip, paths.clip_l, "--clip-l");
  override_with(m.t5, paths.t5xxl, "--t5xxl");
  if (!paths.tokenizers.empty()) {
    std::error_code ec;
    FLUX_CHECK(fs::is_directory(paths.tokenizers, ec), "--tokenizers: not a folder: ", paths.tokenizers);
    m.tokenizers = paths.tokenizers;
  }

  std::vector<std::string> missing;
  if (m.transformer.weights.empty()) missing.push_back("transformer (--diffusion-model FILE or transformer/)");
  if (m.vae.weights.empty()) missing.push_back("autoencoder (--vae FILE or vae/)");
  if (m.clip.weights.empty()) missing.push_back("CLIP-L text encoder (--clip-l FILE or text_encoder/)");
  if (m.t5.weights.empty()) missing.push_back("T5-XXL text encoder (--t5xxl FILE or text_encoder_2/)");
  if (m.tokenizers.empty()) missing.push_back("tokenizers (--tokenizers DIR with tokenizer/ + tokenizer_2/)");
  if (!missing.empty()) {
    std::string list;
    for (const auto& s : missing) list += (list.empty() ? "" : "; ") + s;
    fail("model set incomplete", paths.model_dir.empty() ? "" : " in " + paths.model_dir, ": missing ", list);
  }
  log_debug("model files: transformer ", m.transformer.weights, ", vae ", m.vae.weights, ", clip ", m.clip.weights,
            ", t5 ", m.t5.weights, ", tokenizers ", m.tokenizers);
  return m;
}

}  // namespace flux
