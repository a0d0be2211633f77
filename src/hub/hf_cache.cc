#include "hub/hf_cache.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "hub/hub_protocol.h"

namespace flux::hub {
namespace {

namespace fs = std::filesystem;

// huggingface_hub's repo id rule: letters, digits, '-', '_', '.'; no "--" or ".." ; not starting or ending
// with '-' or '.'; at most 96 characters.
bool valid_name_part(const std::string& s) {
  if (s.empty() || s.size() > 96) return false;
  if (s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
  if (s.find("--") != std::string::npos || s.find("..") != std::string::npos) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string HubRef::str() const {
  std::string s = repo_id;
  if (revision != "main") s += "@" + revision;
  if (!file.empty()) s += ":" + file;
  return s;
}

bool is_hub_ref(const std::string& arg) {
  std::error_code ec;
  if (arg.empty() || fs::exists(arg, ec)) return false;
  try {
    parse_hub_ref(arg);
    return true;
  } catch (const Error&) {
    return false;
  }
}

HubRef parse_hub_ref(const std::string& arg) {
  const std::string shape = "expected ORG/NAME[@REVISION][:FILE] (e.g. black-forest-labs/FLUX.1-schnell)";
  HubRef ref;
  std::string rest = arg;
  if (const size_t colon = rest.find(':'); colon != std::string::npos) {
    ref.file = rest.substr(colon + 1);
    rest.resize(colon);
    FLUX_CHECK(is_safe_repo_path(ref.file), "model \"", arg, "\": FILE \"", ref.file,
               "\" is not a relative path inside the repository");
  }
  if (const size_t at = rest.find('@'); at != std::string::npos) {
    ref.revision = rest.substr(at + 1);
    rest.resize(at);
    FLUX_CHECK(!ref.revision.empty() && ref.revision.size() <= 256 && is_safe_repo_path(ref.revision), "model \"", arg,
               "\": bad REVISION \"", ref.revision, "\"; ", shape);
  }
  const size_t slash = rest.find('/');
  FLUX_CHECK(slash != std::string::npos && rest.find('/', slash + 1) == std::string::npos, "model \"", arg,
             "\": ", shape);
  FLUX_CHECK(valid_name_part(rest.substr(0, slash)) && valid_name_part(rest.substr(slash + 1)), "model \"", arg,
             "\": ORG and NAME may hold letters, digits, '-', '_' and '.'; ", shape);
  ref.repo_id = rest;
  return ref;
}

std::string hub_cache_dir() {
  if (const std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (const std::string v = env("HUGGINGFACE_HUB_CACHE"); !v.empty()) return v;  // the older name
  if (const std::string v = env("HF_HOME"); !v.empty()) return v + "/hub";
  if (const std::string v = env("XDG_CACHE_HOME"); !v.empty()) return v + "/huggingface/hub";
  return env("HOME") + "/.cache/huggingface/hub";
}

std::string repo_cache_dir(const std::string& cache, const std::string& repo_id) {
  std::string folder = "models--" + repo_id;
  const size_t slash = folder.find('/');
  if (slash != std::string::npos) folder.replace(slash, 1, "--");
  return (fs::path(cache) / folder).string();
}

std::string snapshot_dir(const std::string& cache, const std::string& repo_id, const std::string& commit) {
  return (fs::path(repo_cache_dir(cache, repo_id)) / "snapshots" / commit).string();
}

std::string cached_commit(const std::string& cache, const HubRef& ref) {
  const fs::path repo = repo_cache_dir(cache, ref.repo_id);
  std::error_code ec;
  if (is_commit_hash(ref.revision) && fs::is_directory(repo / "snapshots" / ref.revision, ec)) return ref.revision;
  const fs::path refs = repo / "refs" / ref.revision;
  if (!fs::is_regular_file(refs, ec)) return "";
  std::string commit = read_text(refs);
  while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  return is_commit_hash(commit) ? commit : "";
}

std::vector<CachedRepo> list_cache(const std::string& cache) {
  std::vector<CachedRepo> out;
  std::error_code ec;
  if (!fs::is_directory(cache, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(cache, ec)) {
    const std::string folder = e.path().filename().string();
    if (folder.rfind("models--", 0) != 0 || !e.is_directory(ec)) continue;
    CachedRepo r;
    r.dir = e.path().string();
    r.repo_id = folder.substr(8);
    if (const size_t sep = r.repo_id.find("--"); sep != std::string::npos) r.repo_id.replace(sep, 2, "/");
    r.flux = lower(r.repo_id).find("flux") != std::string::npos;
    for (const auto& ref : fs::recursive_directory_iterator(e.path() / "refs", ec))
      if (ref.is_regular_file(ec))
        r.refs.push_back(fs::relative(ref.path(), e.path() / "refs", ec).string() + " -> " +
                         read_text(ref.path()).substr(0, 40));
    for (const auto& snap : fs::directory_iterator(e.path() / "snapshots", ec)) {
      r.snapshots.push_back(snap.path().filename().string());
      const std::string index = read_text(snap.path() / "model_index.json");
      if (index.find("FluxPipeline") != std::string::npos) r.flux = true;
      for (const auto& f : fs::recursive_directory_iterator(snap.path(), ec))
        if (lower(f.path().filename().string()).find("flux") != std::string::npos) r.flux = true;
    }
    for (const auto& blob : fs::directory_iterator(e.path() / "blobs", ec)) {
      const uint64_t size = blob.is_regular_file(ec) ? blob.file_size(ec) : 0;
      (blob.path().extension() == ".incomplete" ? r.partial_bytes : r.bytes) += ec ? 0 : size;
    }
    std::sort(r.refs.begin(), r.refs.end());
    std::sort(r.snapshots.begin(), r.snapshots.end());
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const CachedRepo& a, const CachedRepo& b) { return a.repo_id < b.repo_id; });
  return out;
}

}  // namespace flux::hub
