// The server's LoRA folder (pipeline/lora_dir.h).
#include "pipeline/lora_dir.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "io/safetensors.h"
#include "models/lora.h"

namespace flux {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kExt = ".safetensors";

[[noreturn]] void invalid(const std::string& name, const std::string& why) {
  throw LoraNameError(LoraNameError::Kind::invalid, str_cat("lora name \"", name, "\": ", why));
}

// Whether canonical `path` lies inside canonical `dir`.
bool inside(const fs::path& dir, const fs::path& path) {
  const auto [d, p] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
  return d == dir.end() && p != path.end();
}

fs::path canonical_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path d = fs::canonical(dir, ec);
  FLUX_CHECK(!ec && fs::is_directory(d), "--lora-dir ", dir, ": not a readable folder",
             ec ? ": " + ec.message() : std::string());
  return d;
}

// The LoRA format of a file by its tensor names (remembered by path, size and mtime); nullopt if not a LoRA.
std::optional<std::string> format_of(const fs::path& path, uintmax_t size) {
  struct Known {
    uintmax_t size;
    fs::file_time_type mtime;
    std::optional<std::string> format;
  };
  static std::mutex mutex;
  static std::map<std::string, Known> known;
  std::error_code ec;
  const fs::file_time_type mtime = fs::last_write_time(path, ec);
  std::lock_guard lock(mutex);
  const auto it = known.find(path.string());
  if (it != known.end() && it->second.size == size && it->second.mtime == mtime) return it->second.format;
  std::optional<std::string> format;
  try {
    const SafetensorsFile f = SafetensorsFile::open(path.string());
    std::vector<std::string> names;
    for (const SafetensorsEntry& e : f.entries()) names.push_back(e.name);
    if (const auto lf = detect_lora_format(names)) format = lora_format_name(*lf);
  } catch (const Error&) {
    // not a safetensors file: not listed
  }
  known[path.string()] = {size, mtime, format};
  return format;
}

}  // namespace

void check_lora_name(const std::string& name) {
  if (name.empty()) invalid(name, "empty");
  if (name.size() > 255) invalid(name.substr(0, 40) + "...", "longer than 255 bytes");
  if (name.find('\0') != std::string::npos || name.find('\\') != std::string::npos)
    invalid(name, "NUL or backslash characters are not allowed");
  const fs::path rel(name);
  if (rel.is_absolute() || name.front() == '/')
    invalid(name, "absolute paths are not allowed: give a name inside --lora-dir");
  for (const fs::path& part : rel)
    if (part == "..") invalid(name, "\"..\" is not allowed: give a name inside --lora-dir");
}

std::string resolve_lora_name(const std::string& dir, const std::string& name) {
  check_lora_name(name);
  const fs::path rel(name);
  const fs::path d = canonical_dir(dir);
  fs::path candidate = d / rel;
  std::error_code ec;
  if (!fs::exists(candidate, ec) && candidate.extension() != kExt) candidate += std::string(kExt);
  if (!fs::exists(candidate, ec))
    throw LoraNameError(LoraNameError::Kind::not_found,
                        str_cat("lora \"", name, "\" not found in the LoRA folder (GET /v1/loras lists them)"));
  const fs::path real = fs::canonical(candidate, ec);
  if (ec || !inside(d, real)) invalid(name, "resolves outside --lora-dir (a symbolic link out of the folder)");
  if (!fs::is_regular_file(real)) invalid(name, "not a regular file");
  if (real.extension() != kExt) invalid(name, "not a .safetensors file (only those are adapters)");
  if (!format_of(real, fs::file_size(real, ec))) invalid(name, "not a LoRA (no tensor is named like a LoRA's)");
  return real.string();
}

std::string lora_name_of(const std::string& dir, const std::string& path) {
  const fs::path d = canonical_dir(dir);
  const fs::path p(path);
  FLUX_CHECK(inside(d, p), "lora ", path, ": not inside the LoRA folder ", d.string());
  std::string name = p.lexically_relative(d).string();
  if (name.size() > kExt.size() && name.compare(name.size() - kExt.size(), kExt.size(), kExt) == 0)
    name.resize(name.size() - kExt.size());
  return name;
}

std::vector<LoraFileInfo> list_lora_dir(const std::string& dir) {
  const fs::path d = canonical_dir(dir);
  std::vector<LoraFileInfo> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(d, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() != kExt) continue;
    std::error_code e2;
    const fs::path real = fs::canonical(p, e2);
    if (e2 || !inside(d, real) || !fs::is_regular_file(real)) continue;
    const uintmax_t size = fs::file_size(real, e2);
    if (e2) continue;
    const auto format = format_of(real, size);
    if (!format) continue;
    std::string name = p.lexically_relative(d).string();
    name.resize(name.size() - kExt.size());
    out.push_back({name, real.string(), size, *format});
  }
  FLUX_CHECK(!ec, "--lora-dir ", dir, ": cannot list: ", ec.message());
  std::sort(out.begin(), out.end(), [](const LoraFileInfo& a, const LoraFileInfo& b) { return a.name < b.name; });
  return out;
}

}  // namespace flux
