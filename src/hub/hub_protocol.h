// What the Hugging Face hub sends, parsed without trusting it (fuzz/fuzz_hub.cc): the repository listing of
// GET /api/models/ORG/NAME/revision/REV, the headers of HEAD /ORG/NAME/resolve/REV/PATH that huggingface_hub
// relies on (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size, Location, Content-Length), and the choice of
// the files a FLUX pipeline needs. Every parser throws Error naming what it parsed and what was wrong; none
// may crash or loop on garbage. No I/O here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flux::hub {

struct RepoFile {
  std::string path;              // "transformer/diffusion_pytorch_model-00001-of-00002.safetensors"
  std::optional<uint64_t> size;  // when the listing has it (?blobs=true)
  std::string lfs_sha256;        // when the listing has it; empty for small (git) files
};

struct RepoListing {
  std::string commit;  // "sha": the commit the revision points at (40 hex)
  std::vector<RepoFile> files;
};

// Parses the JSON of /api/models/.../revision/REV. `what` names the request in errors ("ORG/NAME@REV").
RepoListing parse_repo_listing(std::string_view json, const std::string& what);

// A repository path we may write under snapshots/COMMIT/: relative, '/'-separated, no empty, "." or ".."
// segment, no backslash or NUL, at most 1000 bytes.
bool is_safe_repo_path(std::string_view path);
bool is_commit_hash(std::string_view s);  // 40 lower-case hex digits
bool is_sha256_hex(std::string_view s);   // 64 lower-case hex digits

// The files of `listing` a FLUX pipeline reads: with `file` set, that one file (Error naming it when the
// repository has no such file); otherwise the diffusers folder: model_index.json and, in its component
// folders (transformer, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler), the configs,
// tokenizer files and safetensors weights; never the root's single-file checkpoints, other weight formats
// (.bin, .onnx, .msgpack, ...) or variants (*.fp16.safetensors) when the plain file is there. Error when the
// repository is not a diffusers folder (no model_index.json), naming it and the :FILE syntax.
std::vector<RepoFile> files_for_pipeline(const RepoListing& listing, const std::string& file, const std::string& what);

// The response head of one HTTP exchange (the last one when redirects were followed).
struct ResponseHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // names lower-cased, values trimmed
  // The value of a field (its lower-case name), or nullopt.
  std::optional<std::string> field(std::string_view lower_case_name) const;
};

// Feeds one raw header line (as libcurl hands them: "HTTP/1.1 302 Found\r\n", "ETag: \"abc\"\r\n", "\r\n").
// A status line starts a new head (after a redirect or a 100 Continue). Lines that are neither are ignored.
void add_header_line(ResponseHead& head, std::string_view line);

// ETag as huggingface_hub names blobs: without a weak-validator "W/" prefix and the surrounding quotes.
std::string normalize_etag(std::string_view etag);

// What HEAD /ORG/NAME/resolve/REV/PATH tells about one file.
struct FileMetadata {
  std::string commit;    // X-Repo-Commit
  std::string etag;      // X-Linked-Etag (LFS: the sha256) or else ETag, normalized
  uint64_t size = 0;     // X-Linked-Size or else Content-Length
  std::string location;  // Location of a redirect (LFS files are served from elsewhere), or empty
  bool lfs() const;      // the etag is a sha256 (checked after the download)
};
// From the first response of a HEAD (redirects not followed). Error naming `what` when the commit or etag is
// missing or malformed (a blob name must be safe as a file name).
FileMetadata file_metadata(const ResponseHead& head, const std::string& what);

// "bytes 100-199/1000" -> 100 (the first byte of a 206 answer); nullopt when malformed.
std::optional<uint64_t> content_range_start(std::string_view value);

}  // namespace flux::hub
