// Private to src/text: the text clean-up CLIPTokenizer applies before BPE when ftfy is installed,
// `whitespace_clean(ftfy.fix_text(text)).lower()` (transformers tokenization_clip.py), re-implemented from
// ftfy 6.3's documented default steps as far as practical:
//   - HTML entities unescaped only while no '<' has been seen (ftfy's unescape_html="auto", line by line);
//   - UTF-8 mojibake read as Latin-1 / Windows-1252 decoded back ("cafÃ©" -> "café"), C1 controls read
//     as Windows-1252;
//   - Latin ligatures and fullwidth / halfwidth forms replaced by their NFKC form, U+3000 by a space;
//   - curly quotes uncurled, line breaks unified, terminal escapes and control characters removed;
//   - NFC; repeated until nothing changes.
// Not done: ftfy's badness heuristic (a mojibake sequence is fixed wherever it decodes as UTF-8), encodings
// other than Latin-1 / Windows-1252, the HTML5 entities outside the HTML 4 set.
#pragma once

#include <string>
#include <string_view>

namespace flux::text {

std::u32string fix_text(std::u32string_view text);

// CLIP's whitespace_clean: every run of whitespace (Python \s) becomes one space; leading/trailing removed.
std::u32string whitespace_clean(std::u32string_view text);

}  // namespace flux::text
