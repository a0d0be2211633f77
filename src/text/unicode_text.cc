// Unicode helpers of the text layer on top of ICU (categories, bidi classes, case mapping, normalisation).
#include "text/unicode_text.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <vector>

#include "base/error.h"

namespace flux::text {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
  // UTF-16 -> UTF-32; the ICU strings here come from valid code points, so no lone surrogates appear.
  std::u32string out;
  out.reserve(static_cast<size_t>(s.length()));
  for (int32_t i = 0; i < s.length();) {
    const UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

bool is_ascii(std::u32string_view text) {
  for (char32_t c : text)
    if (c >= 0x80) return false;
  return true;
}

std::u32string normalize(const icu::Normalizer2* (*instance)(UErrorCode&), std::u32string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = instance(status);
  FLUX_CHECK(U_SUCCESS(status), "ICU: normaliser unavailable: ", u_errorName(status));
  const icu::UnicodeString source = to_icu(text);
  if (norm->isNormalized(source, status) && U_SUCCESS(status)) return std::u32string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString result = norm->normalize(source, status);
  FLUX_CHECK(U_SUCCESS(status), "ICU: normalisation failed: ", u_errorName(status));
  return from_icu(result);
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned b0 = p[i];
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int need = 0;
    char32_t c = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (excludes overlongs and surrogates)
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1, c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 2, c = b0 & 0x0F;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 3, c = b0 & 0x07;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      out.push_back(kReplacement);
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool ok = true;
    for (int k = 0; k < need; ++k, ++j) {
      const unsigned bk = j < n ? p[j] : 0;
      const bool in_range = j < n && (k == 0 ? (bk >= lo && bk <= hi) : (bk >= 0x80 && bk <= 0xBF));
      if (!in_range) {
        ok = false;
        break;
      }
      c = (c << 6) | (bk & 0x3F);
    }
    out.push_back(ok ? c : kReplacement);
    i = j;  // on failure j points at the first byte that broke the sequence: the maximal subpart is dropped
  }
  return out;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(c, out);
  return out;
}

std::string sanitize_utf8(std::string_view bytes) { return encode_utf8(decode_utf8(bytes)); }

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  const auto u = static_cast<UChar32>(c);
  if (u_charType(u) == U_SPACE_SEPARATOR) return true;
  const UCharDirection dir = u_charDirection(u);
  return dir == U_WHITE_SPACE_NEUTRAL || dir == U_BLOCK_SEPARATOR || dir == U_SEGMENT_SEPARATOR;
}

std::u32string to_lower(std::u32string_view text) {
  if (is_ascii(text)) {
    std::u32string out(text);
    for (char32_t& c : out)
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    return out;
  }
  icu::UnicodeString s = to_icu(text);
  s.toLower(icu::Locale::getRoot());  // root locale: full mappings, Final_Sigma in context, like Python
  return from_icu(s);
}

std::u32string nfc(std::u32string_view text) {
  if (is_ascii(text)) return std::u32string(text);
  return normalize(&icu::Normalizer2::getNFCInstance, text);
}

std::u32string nfkc(std::u32string_view text) {
  if (is_ascii(text)) return std::u32string(text);
  return normalize(&icu::Normalizer2::getNFKCInstance, text);
}

}  // namespace flux::text
