// ftfy-like text fixes for the CLIP tokenizer (see fix_text.h for what is and is not covered).
#include "text/fix_text.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "text/unicode_text.h"

namespace flux::text {
namespace {

// Windows-1252 at bytes 0x80..0x9F; 0 marks the five bytes it leaves undefined (ftfy's "sloppy" codec
// keeps those as the C1 code point of the same value).
constexpr std::array<char16_t, 32> kCp1252High = {0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                                  0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
                                                  0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                                  0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

char32_t cp1252_decode(unsigned byte) {
  if (byte >= 0x80 && byte <= 0x9F && kCp1252High[byte - 0x80] != 0) return kCp1252High[byte - 0x80];
  return byte;
}

// The byte a character had if it was decoded as Latin-1 / sloppy Windows-1252, or -1.
int single_byte_of(char32_t c) {
  if (c < 0x100) return static_cast<int>(c);
  for (unsigned i = 0; i < kCp1252High.size(); ++i)
    if (kCp1252High[i] == c) return static_cast<int>(0x80 + i);
  return -1;
}

// HTML 4 named character references (the set html.entities.html5 extends), by code point.
const std::unordered_map<std::u32string, char32_t>& html_entities() {
  static const std::unordered_map<std::u32string, char32_t> table = [] {
    std::unordered_map<std::u32string, char32_t> t;
    auto add = [&](const char* name, char32_t c) {
      std::u32string key;
      for (const char* p = name; *p; ++p) key.push_back(static_cast<unsigned char>(*p));
      t.emplace(key, c);
    };
    // U+00A0..U+00FF in order.
    static const char* const latin1[96] = {
        "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",    "copy",   "ordf",
        "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn", "sup2",   "sup3",   "acute",  "micro",
        "para",   "middot", "cedil",  "sup1",   "ordm",   "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave",
        "Aacute", "Acirc",  "Atilde", "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",
        "Igrave", "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde", "Ouml",
        "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",  "szlig",  "agrave", "aacute",
        "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil", "egrave", "eacute", "ecirc",  "euml",   "igrave",
        "iacute", "icirc",  "iuml",   "eth",    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide",
        "oslash", "ugrave", "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml"};
    for (int i = 0; i < 96; ++i) add(latin1[i], 0xA0 + i);
    // Greek capitals U+0391.. (U+03A2 unassigned) and small letters U+03B1.. (U+03C2 is final sigma).
    static const char* const greek_names[25] = {"alpha",   "beta", "gamma", "delta",  "epsilon", "zeta", "eta",
                                                "theta",   "iota", "kappa", "lambda", "mu",      "nu",   "xi",
                                                "omicron", "pi",   "rho",   nullptr,  "sigma",   "tau",  "upsilon",
                                                "phi",     "chi",  "psi",   "omega"};
    for (int i = 0; i < 25; ++i) {
      if (!greek_names[i]) continue;
      std::string upper = greek_names[i];
      upper[0] = static_cast<char>(upper[0] - 'a' + 'A');
      add(upper.c_str(), 0x391 + i);
      add(greek_names[i], 0x3B1 + i);
    }
    add("sigmaf", 0x3C2);
    struct Named {
      const char* name;
      char32_t c;
    };
    static const Named others[] = {
        {"quot", 0x22},     {"amp", 0x26},      {"apos", 0x27},      {"lt", 0x3C},        {"gt", 0x3E},
        {"OElig", 0x152},   {"oelig", 0x153},   {"Scaron", 0x160},   {"scaron", 0x161},   {"Yuml", 0x178},
        {"fnof", 0x192},    {"circ", 0x2C6},    {"tilde", 0x2DC},    {"thetasym", 0x3D1}, {"upsih", 0x3D2},
        {"piv", 0x3D6},     {"ensp", 0x2002},   {"emsp", 0x2003},    {"thinsp", 0x2009},  {"zwnj", 0x200C},
        {"zwj", 0x200D},    {"lrm", 0x200E},    {"rlm", 0x200F},     {"ndash", 0x2013},   {"mdash", 0x2014},
        {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"sbquo", 0x201A},   {"ldquo", 0x201C},   {"rdquo", 0x201D},
        {"bdquo", 0x201E},  {"dagger", 0x2020}, {"Dagger", 0x2021},  {"bull", 0x2022},    {"hellip", 0x2026},
        {"permil", 0x2030}, {"prime", 0x2032},  {"Prime", 0x2033},   {"lsaquo", 0x2039},  {"rsaquo", 0x203A},
        {"oline", 0x203E},  {"frasl", 0x2044},  {"euro", 0x20AC},    {"image", 0x2111},   {"weierp", 0x2118},
        {"real", 0x211C},   {"trade", 0x2122},  {"alefsym", 0x2135}, {"larr", 0x2190},    {"uarr", 0x2191},
        {"rarr", 0x2192},   {"darr", 0x2193},   {"harr", 0x2194},    {"crarr", 0x21B5},   {"lArr", 0x21D0},
        {"uArr", 0x21D1},   {"rArr", 0x21D2},   {"dArr", 0x21D3},    {"hArr", 0x21D4},    {"forall", 0x2200},
        {"part", 0x2202},   {"exist", 0x2203},  {"empty", 0x2205},   {"nabla", 0x2207},   {"isin", 0x2208},
        {"notin", 0x2209},  {"ni", 0x220B},     {"prod", 0x220F},    {"sum", 0x2211},     {"minus", 0x2212},
        {"lowast", 0x2217}, {"radic", 0x221A},  {"prop", 0x221D},    {"infin", 0x221E},   {"ang", 0x2220},
        {"and", 0x2227},    {"or", 0x2228},     {"cap", 0x2229},     {"cup", 0x222A},     {"int", 0x222B},
        {"there4", 0x2234}, {"sim", 0x223C},    {"cong", 0x2245},    {"asymp", 0x2248},   {"ne", 0x2260},
        {"equiv", 0x2261},  {"le", 0x2264},     {"ge", 0x2265},      {"sub", 0x2282},     {"sup", 0x2283},
        {"nsub", 0x2284},   {"sube", 0x2286},   {"supe", 0x2287},    {"oplus", 0x2295},   {"otimes", 0x2297},
        {"perp", 0x22A5},   {"sdot", 0x22C5},   {"lceil", 0x2308},   {"rceil", 0x2309},   {"lfloor", 0x230A},
        {"rfloor", 0x230B}, {"lang", 0x27E8},   {"rang", 0x27E9},    {"loz", 0x25CA},     {"spades", 0x2660},
        {"clubs", 0x2663},  {"hearts", 0x2665}, {"diams", 0x2666}};
    for (const Named& n : others) add(n.name, n.c);
    return t;
  }();
  return table;
}

bool is_ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

// html.unescape of one numeric reference (digits without the "&#" and ";"); false: leave the text as is.
bool numeric_reference(std::u32string_view digits, std::u32string& out) {
  int base = 10;
  if (!digits.empty() && (digits[0] == 'x' || digits[0] == 'X')) base = 16, digits.remove_prefix(1);
  if (digits.empty()) return false;
  uint64_t value = 0;
  for (char32_t d : digits) {
    int v = -1;
    if (d >= '0' && d <= '9') v = static_cast<int>(d - '0');
    if (base == 16 && (d | 0x20) >= 'a' && (d | 0x20) <= 'f') v = static_cast<int>((d | 0x20) - 'a' + 10);
    if (v < 0) return false;  // Python would stop before this character and keep the ';' -> ftfy keeps the text
    value = std::min<uint64_t>(value * base + v, 0x110000);
  }
  if (value == 0 || (value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) {
    out.push_back(0xFFFD);
  } else if (value >= 0x80 && value <= 0x9F) {
    out.push_back(cp1252_decode(static_cast<unsigned>(value)));
  } else if ((value >= 0x1 && value <= 0x8) || value == 0xB || (value >= 0xE && value <= 0x1F) || value == 0x7F ||
             (value >= 0xFDD0 && value <= 0xFDEF) || (value & 0xFFFE) == 0xFFFE) {
    // html.unescape drops these invalid code points
  } else {
    out.push_back(static_cast<char32_t>(value));
  }
  return true;
}

// ftfy unescape_html: every "&#?[0-9A-Za-z]{1,24};" that names a character is replaced by it.
std::u32string unescape_html(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '&') {
      out.push_back(text[i]);
      continue;
    }
    size_t j = i + 1;
    const bool numeric = j < text.size() && text[j] == '#';
    if (numeric) ++j;
    const size_t start = j;
    while (j < text.size() && j - start < 25 && is_ascii_alnum(text[j])) ++j;
    const size_t len = j - start;
    if (len < 1 || len > 24 || j >= text.size() || text[j] != ';') {
      out.push_back(text[i]);
      continue;
    }
    const std::u32string_view name = text.substr(start, len);
    bool replaced = false;
    if (numeric) {
      replaced = numeric_reference(name, out);
    } else {
      const auto& table = html_entities();
      if (auto it = table.find(std::u32string(name)); it != table.end()) {
        out.push_back(it->second), replaced = true;
      } else {
        // ftfy also accepts an all-capitals spelling of a lower-case entity ("&EACUTE;" -> "É").
        std::u32string lower(name);
        bool all_upper = true;
        for (char32_t& c : lower) {
          if (c >= 'a' && c <= 'z') all_upper = false;
          if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        }
        if (auto lit = table.find(lower); all_upper && lit != table.end()) {
          out.push_back(static_cast<char32_t>(u_toupper(static_cast<UChar32>(lit->second)))), replaced = true;
        }
      }
    }
    if (replaced) {
      i = j;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// UTF-8 read as Latin-1 / Windows-1252: a lead character followed by the right number of continuation
// characters that together decode as one UTF-8 character is replaced by that character.
std::u32string fix_mojibake(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const int b0 = single_byte_of(text[i]);
    const int need = b0 >= 0xC2 && b0 <= 0xDF ? 1 : b0 >= 0xE0 && b0 <= 0xEF ? 2 : b0 >= 0xF0 && b0 <= 0xF4 ? 3 : 0;
    if (need > 0 && i + need < text.size()) {
      std::string bytes(1, static_cast<char>(b0));
      for (int k = 1; k <= need; ++k) {
        const int b = single_byte_of(text[i + k]);
        if (b < 0x80 || b > 0xBF) break;
        bytes.push_back(static_cast<char>(b));
      }
      if (static_cast<int>(bytes.size()) == need + 1) {
        const std::u32string decoded = decode_utf8(bytes);
        if (decoded.size() == 1 && decoded[0] != 0xFFFD) {
          out.push_back(decoded[0]);
          i += need;
          continue;
        }
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

bool is_latin_ligature(char32_t c) {
  return c == 0x132 || c == 0x133 || c == 0x149 || (c >= 0x1C7 && c <= 0x1CC) || (c >= 0x1F1 && c <= 0x1F3) ||
         (c >= 0xFB00 && c <= 0xFB06);
}

bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// One pass of the per-character fixes: C1 controls, ligatures, character width, quotes, line breaks,
// terminal escapes, control characters.
std::u32string fix_characters(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {  // ESC [ (digits | ';')* letter
      size_t j = i + 2;
      while (j < text.size() && ((text[j] >= '0' && text[j] <= '9') || text[j] == ';')) ++j;
      if (j < text.size() && (text[j] | 0x20) >= 'a' && (text[j] | 0x20) <= 'z') {
        i = j;
        continue;
      }
    }
    if (c >= 0x80 && c <= 0x9F) {
      out.push_back(cp1252_decode(c));
    } else if (is_latin_ligature(c) || (c >= 0xFF01 && c <= 0xFFEF)) {
      out += nfkc(std::u32string_view(&c, 1));
    } else if (c == 0x3000) {
      out.push_back(' ');
    } else if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) {
      out.push_back('\'');
    } else if (c >= 0x201C && c <= 0x201F) {
      out.push_back('"');
    } else if (c == '\r') {
      out.push_back('\n');
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      out.push_back('\n');
    } else if (!is_removed_control(c)) {
      out.push_back(c);
    }
  }
  return out;
}

std::u32string fix_segment(std::u32string_view segment, bool unescape) {
  std::u32string text(segment);
  for (int pass = 0; pass < 16; ++pass) {  // ftfy repeats its steps until the text stops changing
    std::u32string next = unescape ? unescape_html(text) : text;
    next = nfc(fix_characters(fix_mojibake(next)));
    if (next == text) break;
    text = std::move(next);
  }
  return text;
}

}  // namespace

std::u32string fix_text(std::u32string_view text) {
  // ftfy.fix_text works line by line (segments end after '\n', at most 10^6 characters); once a segment
  // contains '<', HTML entities are left alone from there on.
  constexpr size_t kMaxSegment = 1000000;
  std::u32string out;
  out.reserve(text.size());
  bool unescape = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(U'\n', pos);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    end = std::min(end, pos + kMaxSegment);
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (segment.find(U'<') != std::u32string_view::npos) unescape = false;
    out += fix_segment(segment, unescape);
    pos = end;
  }
  return out;
}

std::u32string whitespace_clean(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char32_t c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace flux::text
