// multipart/form-data parsing (see multipart.h). RFC 2046 section 5.1.1: delimiter = CRLF "--" boundary;
// the first delimiter may start the body; transport padding (spaces, tabs) may follow a delimiter.
#include "server/multipart.h"

#include <algorithm>
#include <cctype>

#include "server/errors.h"

namespace flux::server {
namespace {

[[noreturn]] void bad(const std::string& message) {
  throw HttpError(400, str_cat("multipart body: ", message), "body", "invalid_multipart");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A printable excerpt of untrusted bytes for messages.
std::string excerpt(std::string_view s, size_t n = 40) {
  std::string out;
  for (char c : s.substr(0, n)) out += (c >= 32 && c < 127) ? c : '?';
  if (s.size() > n) out += "...";
  return out;
}

// `; key=value; key="quoted \" value"` parameters after the first `;` of a header value. Keys lower-cased.
std::vector<std::pair<std::string, std::string>> header_params(std::string_view value, const char* header) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t at = value.find(';');
  while (at != std::string_view::npos && at < value.size()) {
    ++at;  // past ';'
    while (at < value.size() && (value[at] == ' ' || value[at] == '\t')) ++at;
    if (at >= value.size()) break;
    const size_t eq = value.find('=', at);
    const size_t semi = value.find(';', at);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      // A bare token (no '='): skip it.
      at = semi;
      continue;
    }
    std::string key = lower(trim(value.substr(at, eq - at)));
    size_t v = eq + 1;
    std::string val;
    if (v < value.size() && value[v] == '"') {
      ++v;
      bool closed = false;
      while (v < value.size()) {
        const char c = value[v++];
        if (c == '\\' && v < value.size()) {
          val += value[v++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          val += c;
        }
      }
      if (!closed) bad(str_cat(header, ": unterminated quoted value of parameter \"", excerpt(key), "\""));
      at = value.find(';', v);
    } else {
      at = value.find(';', v);
      val = std::string(trim(value.substr(v, at == std::string_view::npos ? std::string_view::npos : at - v)));
    }
    out.emplace_back(std::move(key), std::move(val));
  }
  return out;
}

// Parses the header block of part `index` (lines separated by CRLF, no trailing empty line).
MultipartPart parse_part_headers(std::string_view block, size_t index) {
  MultipartPart part;
  bool has_disposition = false;
  size_t at = 0;
  while (at <= block.size()) {
    size_t end = block.find("\r\n", at);
    if (end == std::string_view::npos) end = block.size();
    const std::string_view line = block.substr(at, end - at);
    at = end + 2;
    if (line.empty()) {
      if (end >= block.size()) break;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      bad(str_cat("part ", index + 1, ": expected a header line \"Name: value\", got \"", excerpt(line), "\""));
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 1));
    if (name == "content-disposition") {
      const std::string kind = lower(trim(value.substr(0, value.find(';'))));
      if (kind != "form-data")
        bad(str_cat("part ", index + 1, ": expected Content-Disposition form-data, got \"", excerpt(kind), "\""));
      has_disposition = true;
      bool has_name = false;
      for (auto& [key, val] : header_params(value, "Content-Disposition")) {
        if (key == "name") {
          part.name = std::move(val);
          has_name = true;
        } else if (key == "filename") {
          part.filename = std::move(val);
          part.has_filename = true;
        }
      }
      if (!has_name || part.name.empty())
        bad(str_cat("part ", index + 1, ": Content-Disposition has no name=\"...\" parameter"));
      if (part.name.size() > kMaxNameBytes)
        bad(str_cat("part ", index + 1, ": field name of ", part.name.size(), " bytes, expected at most ",
                    kMaxNameBytes));
      for (char c : part.name)
        if (static_cast<unsigned char>(c) < 32 || c == 127)
          bad(str_cat("part ", index + 1, ": field name \"", excerpt(part.name), "\" contains control characters"));
    } else if (name == "content-type") {
      part.content_type = lower(trim(value.substr(0, value.find(';'))));
    }
    // Other headers (Content-Transfer-Encoding, ...) are ignored, as RFC 7578 allows.
  }
  if (!has_disposition) bad(str_cat("part ", index + 1, ": no Content-Disposition header"));
  return part;
}

}  // namespace

bool is_multipart_form(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';')))) == "multipart/form-data";
}

std::string multipart_boundary(std::string_view content_type) {
  if (!is_multipart_form(content_type))
    bad(str_cat("expected Content-Type multipart/form-data, got \"", excerpt(content_type, 80), "\""));
  std::string boundary;
  bool found = false;
  for (auto& [key, val] : header_params(content_type, "Content-Type"))
    if (key == "boundary") boundary = std::move(val), found = true;
  if (!found) bad("Content-Type multipart/form-data has no boundary parameter");
  if (boundary.empty() || boundary.size() > 70)
    bad(str_cat("boundary: expected 1..70 characters, got ", boundary.size()));
  for (char c : boundary)
    if (c < 32 || c > 126) bad("boundary: expected printable ASCII characters");
  return boundary;
}

std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view content_type) {
  const std::string boundary = multipart_boundary(content_type);
  const std::string dash = "--" + boundary;
  const std::string delimiter = "\r\n" + dash;
  // The first delimiter: at the very start, or after a preamble ending in CRLF.
  size_t at = 0;
  if (body.substr(0, dash.size()) == dash) {
    at = dash.size();
  } else {
    const size_t first = body.find(delimiter);
    if (first == std::string_view::npos) bad(str_cat("no boundary line \"", excerpt(dash, 80), "\" found"));
    at = first + delimiter.size();
  }
  std::vector<MultipartPart> parts;
  for (;;) {
    // After a delimiter: "--" closes the body; else optional padding and CRLF open a part.
    if (body.substr(at, 2) == "--") {
      if (parts.empty()) bad("no parts (the body closes at its first boundary)");
      return parts;
    }
    while (at < body.size() && (body[at] == ' ' || body[at] == '\t')) ++at;
    if (body.substr(at, 2) != "\r\n")
      bad(str_cat("expected CRLF after boundary at byte ", at, ", got \"", excerpt(body.substr(at, 8)), "\""));
    at += 2;
    if (parts.size() == kMaxMultipartParts) bad(str_cat("more than ", kMaxMultipartParts, " parts"));
    // Headers end at the first empty line (CRLF CRLF; an immediate CRLF means no headers).
    size_t headers_end = 0, content = 0;
    if (body.substr(at, 2) == "\r\n") {
      headers_end = at;
      content = at + 2;
    } else {
      const size_t end = body.substr(at, kMaxPartHeaderBytes + 4).find("\r\n\r\n");
      if (end == std::string_view::npos)
        bad(str_cat("part ", parts.size() + 1, ": headers not terminated by an empty line within ", kMaxPartHeaderBytes,
                    " bytes"));
      headers_end = at + end;
      content = headers_end + 4;
    }
    MultipartPart part = parse_part_headers(body.substr(at, headers_end - at), parts.size());
    const size_t next = body.find(delimiter, content);
    if (next == std::string_view::npos)
      bad(str_cat("part ", parts.size() + 1, " (\"", excerpt(part.name), "\"): not terminated by a boundary line"));
    part.data = body.substr(content, next - content);
    parts.push_back(std::move(part));
    at = next + delimiter.size();
  }
}

}  // namespace flux::server
