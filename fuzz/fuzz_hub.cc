// libFuzzer target: what the Hugging Face hub sends (hub/hub_protocol.h) and model names (hub/hf_cache.h). The
// repository listing (JSON), response header lines, Content-Range and ORG/NAME[@REV][:FILE] must be parsed or
// refused with flux::Error, never crash, hang or accept a path that leaves the repository.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "hub/hf_cache.h"
#include "hub/hub_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flux::hub;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const RepoListing listing = parse_repo_listing(text, "fuzz");
    for (const RepoFile& f : listing.files)
      if (!is_safe_repo_path(f.path)) __builtin_trap();  // the parser let an unsafe path through
    files_for_pipeline(listing, "", "fuzz");
    if (!listing.files.empty()) files_for_pipeline(listing, listing.files.front().path, "fuzz");
  } catch (const flux::Error&) {
  }
  ResponseHead head;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    add_header_line(head, text.substr(start, end - start + (end < text.size() ? 1 : 0)));
    start = end + 1;
  }
  try {
    const FileMetadata m = file_metadata(head, "fuzz");
    if (m.etag.find('/') != std::string::npos || m.etag == "." || m.etag == "..") __builtin_trap();
  } catch (const flux::Error&) {
  }
  content_range_start(text);
  normalize_etag(text);
  try {
    const HubRef ref = parse_hub_ref(std::string(text));
    if (!ref.file.empty() && !is_safe_repo_path(ref.file)) __builtin_trap();
  } catch (const flux::Error&) {
  }
  return 0;
}
