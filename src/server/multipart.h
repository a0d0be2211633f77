// multipart/form-data bodies (RFC 7578 over RFC 2046), as OpenAI's /v1/images/edits takes them: the boundary
// from the Content-Type header, then parts of header lines, an empty line and the content, up to the next
// CRLF "--" boundary; the last delimiter ends with "--". Strict CRLF framing; preamble and epilogue ignored.
// Bounded: at most kMaxParts parts, kMaxPartHeaderBytes of headers per part, names of kMaxNameBytes; the body
// itself is bounded by the server's body limit. Every refusal is an HttpError 400 (param "body") saying what
// was expected and what came instead. No socket, no allocation proportional to the content (parts are views).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flux::server {

struct MultipartPart {
  std::string name;           // Content-Disposition: form-data; name="..."
  std::string filename;       // filename="..." (empty when absent)
  bool has_filename = false;  // a file upload (even with an empty filename)
  std::string content_type;   // the part's Content-Type, lower-cased ("" when absent)
  std::string_view data;      // the content: a view into the body
};

constexpr size_t kMaxMultipartParts = 64;
constexpr size_t kMaxPartHeaderBytes = 8192;
constexpr size_t kMaxNameBytes = 256;

// True when the Content-Type names multipart/form-data (parameters aside, case-insensitive).
bool is_multipart_form(std::string_view content_type);
// The boundary parameter of a multipart/form-data Content-Type (quoted or not; 1..70 characters).
std::string multipart_boundary(std::string_view content_type);
// The parts of `body` (views into it: keep the body alive while using them).
std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view content_type);

}  // namespace flux::server
