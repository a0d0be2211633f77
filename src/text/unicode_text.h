// Private to src/text: the Unicode facts the tokenizers need, taken from ICU (Debian libicu-dev) so no
// table is compiled in. Text is held as UTF-32 (std::u32string) between the steps.
#pragma once

#include <string>
#include <string_view>

namespace flux::text {

// UTF-8 -> code points. Invalid bytes are replaced by U+FFFD, one per maximal invalid subpart, as Python's
// bytes.decode("utf-8", "replace") does.
std::u32string decode_utf8(std::string_view bytes);
void append_utf8(char32_t c, std::string& out);
std::string encode_utf8(std::u32string_view text);
// Any bytes -> valid UTF-8 (same replacement rule as decode_utf8).
std::string sanitize_utf8(std::string_view bytes);

bool is_letter(char32_t c);  // general category L* (Lu Ll Lt Lm Lo): regex \p{L}
bool is_number(char32_t c);  // general category N* (Nd Nl No): regex \p{N}
// Python str.isspace(): bidi class WS, B or S, or category Zs (what `re`'s \s matches in a str pattern).
bool is_space(char32_t c);

// Python str.lower(): full case mapping (one code point may become several), final sigma in context.
std::u32string to_lower(std::u32string_view text);
// Unicode normalisation forms C and KC.
std::u32string nfc(std::u32string_view text);
std::u32string nfkc(std::u32string_view text);

}  // namespace flux::text
