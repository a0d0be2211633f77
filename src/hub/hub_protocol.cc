#include "hub/hub_protocol.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace flux::hub {
namespace {

using nlohmann::json;

bool is_lower_hex(std::string_view s, size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// The component folders of a diffusers FLUX pipeline (model_index.json lists them).
constexpr std::string_view kComponents[] = {"transformer", "vae",         "text_encoder", "text_encoder_2",
                                            "tokenizer",   "tokenizer_2", "scheduler"};

bool wanted_in_component(std::string_view name) {
  // Configs, tokenizer files (vocab.json, merges.txt, spiece.model, tokenizer.json) and safetensors weights.
  return ends_with(name, ".json") || ends_with(name, ".txt") || ends_with(name, ".model") ||
         ends_with(name, ".safetensors");
}

// "diffusion_pytorch_model.fp16.safetensors" -> "diffusion_pytorch_model.safetensors" (a variant), or "".
std::string plain_of_variant(std::string_view name) {
  const size_t ext = name.rfind('.');
  if (ext == std::string_view::npos || ext == 0) return "";
  const size_t dot = name.rfind('.', ext - 1);
  if (dot == std::string_view::npos) return "";
  const std::string_view variant = name.substr(dot + 1, ext - dot - 1);
  if (variant != "fp16" && variant != "bf16" && variant != "fp32") return "";
  return std::string(name.substr(0, dot)) + std::string(name.substr(ext));
}

}  // namespace

bool is_commit_hash(std::string_view s) { return is_lower_hex(s, 40); }
bool is_sha256_hex(std::string_view s) { return is_lower_hex(s, 64); }

bool is_safe_repo_path(std::string_view path) {
  if (path.empty() || path.size() > 1000 || path.front() == '/') return false;
  if (path.find('\\') != std::string_view::npos || path.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, slash - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    start = slash + 1;
  }
  return true;
}

RepoListing parse_repo_listing(std::string_view text, const std::string& what) {
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  FLUX_CHECK(j.is_object(), what, ": the hub's repository listing is not a JSON object");
  RepoListing listing;
  const auto sha = j.find("sha");
  FLUX_CHECK(sha != j.end() && sha->is_string() && is_commit_hash(sha->get_ref<const std::string&>()), what,
             ": the hub's listing has no commit (\"sha\": 40 hex digits)");
  listing.commit = sha->get<std::string>();
  const auto siblings = j.find("siblings");
  FLUX_CHECK(siblings != j.end() && siblings->is_array(), what, ": the hub's listing has no \"siblings\" array");
  for (const json& s : *siblings) {
    FLUX_CHECK(s.is_object(), what, ": an entry of \"siblings\" is not an object");
    const auto name = s.find("rfilename");
    FLUX_CHECK(name != s.end() && name->is_string(), what, ": an entry of \"siblings\" has no \"rfilename\"");
    RepoFile f;
    f.path = name->get<std::string>();
    FLUX_CHECK(is_safe_repo_path(f.path), what, ": unsafe file name in the listing: \"", f.path, "\"");
    const auto size = s.find("size");
    if (size != s.end() && size->is_number_unsigned()) f.size = size->get<uint64_t>();
    const auto lfs = s.find("lfs");
    if (lfs != s.end() && lfs->is_object()) {
      const auto sha256 = lfs->find("sha256");
      if (sha256 != lfs->end() && sha256->is_string() && is_sha256_hex(sha256->get_ref<const std::string&>()))
        f.lfs_sha256 = sha256->get<std::string>();
    }
    listing.files.push_back(std::move(f));
  }
  return listing;
}

std::vector<RepoFile> files_for_pipeline(const RepoListing& listing, const std::string& file, const std::string& what) {
  if (!file.empty()) {
    for (const RepoFile& f : listing.files)
      if (f.path == file) return {f};
    fail(what, ": no file \"", file, "\" in the repository at commit ", listing.commit);
  }
  std::map<std::string, const RepoFile*> by_path;
  for (const RepoFile& f : listing.files) by_path[f.path] = &f;
  FLUX_CHECK(by_path.count("model_index.json"), what,
             ": not a diffusers folder (no model_index.json); name one file of it with ORG/NAME:FILE");
  std::vector<RepoFile> out;
  for (const RepoFile& f : listing.files) {
    if (f.path == "model_index.json") {
      out.push_back(f);
      continue;
    }
    const size_t slash = f.path.find('/');
    if (slash == std::string::npos || f.path.find('/', slash + 1) != std::string::npos) continue;
    const std::string_view folder = std::string_view(f.path).substr(0, slash);
    const std::string_view name = std::string_view(f.path).substr(slash + 1);
    if (std::find(std::begin(kComponents), std::end(kComponents), folder) == std::end(kComponents)) continue;
    if (!wanted_in_component(name)) continue;
    const std::string plain = plain_of_variant(name);
    if (!plain.empty() && by_path.count(std::string(folder) + "/" + plain)) continue;
    out.push_back(f);
  }
  return out;
}

std::optional<std::string> ResponseHead::field(std::string_view lower_case_name) const {
  for (const auto& [name, value] : fields)
    if (name == lower_case_name) return value;
  return std::nullopt;
}

void add_header_line(ResponseHead& head, std::string_view line) {
  line = trim(line);
  if (line.substr(0, 5) == "HTTP/") {
    head = ResponseHead();
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return;
    const std::string_view code = line.substr(space + 1, 3);
    if (const auto v = parse_u64(code); v && *v >= 100 && *v <= 999) head.status = static_cast<int>(*v);
    return;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (head.fields.size() < 1000) head.fields.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
}

std::string normalize_etag(std::string_view etag) {
  etag = trim(etag);
  if (etag.substr(0, 2) == "W/") etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

bool FileMetadata::lfs() const { return is_sha256_hex(etag); }

FileMetadata file_metadata(const ResponseHead& head, const std::string& what) {
  FileMetadata m;
  m.commit = head.field("x-repo-commit").value_or("");
  FLUX_CHECK(is_commit_hash(m.commit), what, ": the hub's answer has no X-Repo-Commit (40 hex digits), got \"",
             m.commit.substr(0, 80), "\"");
  const auto linked = head.field("x-linked-etag");
  m.etag = normalize_etag(linked ? *linked : head.field("etag").value_or(""));
  // The etag names a file in blobs/: only hex-like names are accepted.
  FLUX_CHECK(
      !m.etag.empty() && m.etag.size() <= 128 &&
          std::all_of(m.etag.begin(), m.etag.end(),
                      [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; }),
      what, ": the hub's answer has no usable ETag, got \"", m.etag.substr(0, 80), "\"");
  const auto size = head.field("x-linked-size") ? head.field("x-linked-size") : head.field("content-length");
  const auto parsed = size ? parse_u64(*size) : std::nullopt;
  FLUX_CHECK(parsed.has_value(), what, ": the hub's answer has no file size (X-Linked-Size or Content-Length)");
  m.size = *parsed;
  if (head.status >= 300 && head.status < 400) m.location = head.field("location").value_or("");
  return m;
}

std::optional<uint64_t> content_range_start(std::string_view value) {
  value = trim(value);
  if (value.substr(0, 6) != "bytes ") return std::nullopt;
  value.remove_prefix(6);
  const size_t dash = value.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  return parse_u64(value.substr(0, dash));
}

}  // namespace flux::hub
