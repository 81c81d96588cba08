// Unicode helpers for the tokenizers; see unicode.h for what the tables cover.
#include "text/unicode.h"

#include <algorithm>
#include <unordered_map>

namespace tinv::unicode {
namespace {

struct Range {
  char32_t lo, hi;
};

// General Category L* (letters), sorted, non-overlapping. Combining marks (M*) are excluded.
constexpr Range kLetters[] = {
    {0x41, 0x5A},
    {0x61, 0x7A},
    {0xAA, 0xAA},
    {0xB5, 0xB5},
    {0xBA, 0xBA},
    {0xC0, 0xD6},
    {0xD8, 0xF6},
    {0xF8, 0x2C1},
    {0x2C6, 0x2D1},
    {0x2E0, 0x2E4},
    {0x2EC, 0x2EC},
    {0x2EE, 0x2EE},
    // Greek and Coptic, Cyrillic
    {0x370, 0x374},
    {0x376, 0x377},
    {0x37A, 0x37D},
    {0x37F, 0x37F},
    {0x386, 0x386},
    {0x388, 0x38A},
    {0x38C, 0x38C},
    {0x38E, 0x3A1},
    {0x3A3, 0x3F5},
    {0x3F7, 0x481},
    {0x48A, 0x52F},
    // Armenian
    {0x531, 0x556},
    {0x559, 0x559},
    {0x560, 0x588},
    // Hebrew
    {0x5D0, 0x5EA},
    {0x5EF, 0x5F2},
    // Arabic
    {0x620, 0x64A},
    {0x66E, 0x66F},
    {0x671, 0x6D3},
    {0x6D5, 0x6D5},
    {0x6E5, 0x6E6},
    {0x6EE, 0x6EF},
    {0x6FA, 0x6FC},
    {0x6FF, 0x6FF},
    {0x750, 0x77F},
    // Devanagari
    {0x904, 0x939},
    {0x93D, 0x93D},
    {0x950, 0x950},
    {0x958, 0x961},
    {0x971, 0x980},
    // Bengali
    {0x985, 0x98C},
    {0x98F, 0x990},
    {0x993, 0x9A8},
    {0x9AA, 0x9B0},
    {0x9B2, 0x9B2},
    {0x9B6, 0x9B9},
    {0x9BD, 0x9BD},
    {0x9CE, 0x9CE},
    {0x9DC, 0x9DD},
    {0x9DF, 0x9E1},
    {0x9F0, 0x9F1},
    // Thai
    {0xE01, 0xE30},
    {0xE32, 0xE33},
    {0xE40, 0xE46},
    // Georgian, Hangul Jamo
    {0x10A0, 0x10C5},
    {0x10C7, 0x10C7},
    {0x10CD, 0x10CD},
    {0x10D0, 0x10FA},
    {0x10FC, 0x11FF},
    // Cyrillic Extended-C, Georgian Extended, phonetic extensions
    {0x1C80, 0x1C88},
    {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF},
    {0x1D00, 0x1DBF},
    // Latin Extended Additional, Greek Extended
    {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},
    {0x1F50, 0x1F57},
    {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D},
    {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC},
    {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC},
    // superscript/subscript letters, letterlike symbols
    {0x2071, 0x2071},
    {0x207F, 0x207F},
    {0x2090, 0x209C},
    {0x2102, 0x2102},
    {0x2107, 0x2107},
    {0x210A, 0x2113},
    {0x2115, 0x2115},
    {0x2119, 0x211D},
    {0x2124, 0x2124},
    {0x2126, 0x2126},
    {0x2128, 0x2128},
    {0x212A, 0x212D},
    {0x212F, 0x2139},
    {0x213C, 0x213F},
    {0x2145, 0x2149},
    {0x214E, 0x214E},
    {0x2183, 0x2184},
    // Glagolitic, Latin Extended-C, Coptic, Georgian Supplement, Cyrillic Extended-A
    {0x2C00, 0x2CE4},
    {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3},
    {0x2D00, 0x2D25},
    {0x2D27, 0x2D27},
    {0x2D2D, 0x2D2D},
    // CJK symbols (iteration marks), Hiragana, Katakana, Bopomofo, Hangul compatibility
    {0x3005, 0x3006},
    {0x3031, 0x3035},
    {0x303B, 0x303C},
    {0x3041, 0x3096},
    {0x309D, 0x309F},
    {0x30A1, 0x30FA},
    {0x30FC, 0x30FF},
    {0x3105, 0x312F},
    {0x3131, 0x318E},
    {0x31A0, 0x31BF},
    {0x31F0, 0x31FF},
    // CJK Extension A, CJK Unified, Yi
    {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF},
    {0xA000, 0xA48C},
    {0xA4D0, 0xA4FD},
    // Cyrillic Extended-B, Latin Extended-D
    {0xA640, 0xA66E},
    {0xA67F, 0xA69D},
    {0xA717, 0xA71F},
    {0xA722, 0xA788},
    {0xA78B, 0xA7CA},
    {0xA7D0, 0xA7D9},
    {0xA7F2, 0xA801},
    // Latin Extended-E, Hangul syllables
    {0xAB30, 0xAB5A},
    {0xAB5C, 0xAB69},
    {0xAC00, 0xD7A3},
    {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB},
    // CJK compatibility, alphabetic presentation forms, Arabic presentation forms
    {0xF900, 0xFA6D},
    {0xFA70, 0xFAD9},
    {0xFB00, 0xFB06},
    {0xFB13, 0xFB17},
    {0xFB50, 0xFBB1},
    {0xFBD3, 0xFD3D},
    {0xFD50, 0xFD8F},
    {0xFD92, 0xFDC7},
    {0xFDF0, 0xFDFB},
    {0xFE70, 0xFE74},
    {0xFE76, 0xFEFC},
    // fullwidth Latin, halfwidth Katakana and Hangul
    {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},
    {0xFF66, 0xFFBE},
    {0xFFC2, 0xFFC7},
    {0xFFCA, 0xFFCF},
    {0xFFD2, 0xFFD7},
    {0xFFDA, 0xFFDC},
    // Deseret, CJK Extensions B-G
    {0x10400, 0x1044F},
    {0x20000, 0x2A6DF},
    {0x2A700, 0x2EBE0},
    {0x2F800, 0x2FA1D},
    {0x30000, 0x3134A},
};

// General Category N* (Nd, Nl, No).
constexpr Range kNumbers[] = {
    {0x30, 0x39},     {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},   {0x6F0, 0x6F9},
    {0x966, 0x96F},   {0x9E6, 0x9EF},   {0x9F4, 0x9F9},   {0xE50, 0xE59},   {0x2070, 0x2070}, {0x2074, 0x2079},
    {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793},
    {0x2CFD, 0x2CFD}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229},
    {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xFF10, 0xFF19},
};

template <size_t N>
bool in_table(const Range (&table)[N], char32_t cp) {
  auto it =
      std::upper_bound(std::begin(table), std::end(table), cp, [](char32_t c, const Range& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= (it - 1)->hi;
}

// Greek Extended (U+1F00..U+1FFF).
char32_t lower_greek_extended(char32_t c) {
  char32_t lo = c & 0xF;
  char32_t row = c & 0xFFF0;
  if ((row == 0x1F00 || row == 0x1F10 || row == 0x1F20 || row == 0x1F30 || row == 0x1F40 || row == 0x1F60 ||
       row == 0x1F80 || row == 0x1F90 || row == 0x1FA0) &&
      lo >= 8)
    return (row == 0x1F10 || row == 0x1F40) && lo >= 0xE ? c : c - 8;
  if (row == 0x1F50 && lo >= 8 && (lo % 2 == 1)) return c - 8;
  switch (c) {
    case 0x1FB8:
    case 0x1FB9:
    case 0x1FD8:
    case 0x1FD9:
    case 0x1FE8:
    case 0x1FE9: return c - 8;
    case 0x1FBA:
    case 0x1FBB: return c - 0x1FBA + 0x1F70;
    case 0x1FC8:
    case 0x1FC9:
    case 0x1FCA:
    case 0x1FCB: return c - 0x1FC8 + 0x1F72;
    case 0x1FDA:
    case 0x1FDB: return c - 0x1FDA + 0x1F76;
    case 0x1FEA:
    case 0x1FEB: return c - 0x1FEA + 0x1F7A;
    case 0x1FF8:
    case 0x1FF9: return c - 0x1FF8 + 0x1F78;
    case 0x1FFA:
    case 0x1FFB: return c - 0x1FFA + 0x1F7C;
    case 0x1FBC: return 0x1FB3;
    case 0x1FCC: return 0x1FC3;
    case 0x1FEC: return 0x1FE5;
    case 0x1FFC: return 0x1FF3;
    default: return c;
  }
}

// Simple lowercase mapping (one code point to one code point) for the covered scripts.
char32_t lower_simple(char32_t c) {
  auto pair_even = [](char32_t c) { return (c % 2 == 0) ? c + 1 : c; };  // upper even
  auto pair_odd = [](char32_t c) { return (c % 2 == 1) ? c + 1 : c; };   // upper odd
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c < 0x100) return (c >= 0xC0 && c <= 0xDE && c != 0xD7) ? c + 32 : c;
  if (c < 0x180) {  // Latin Extended-A
    if (c == 0x178) return 0xFF;
    if (c == 0x17F || c == 0x138 || c == 0x149) return c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return pair_odd(c);
    return pair_even(c);
  }
  if (c < 0x250) {  // Latin Extended-B (the regular parts)
    if (c == 0x1C4 || c == 0x1C7 || c == 0x1CA || c == 0x1F1) return c + 2;
    if (c == 0x1C5 || c == 0x1C8 || c == 0x1CB || c == 0x1F2) return c + 1;
    if (c >= 0x1CD && c <= 0x1DC) return pair_odd(c);
    if ((c >= 0x1DE && c <= 0x1EF) || (c >= 0x1F8 && c <= 0x21F) || (c >= 0x222 && c <= 0x233)) return pair_even(c);
    return c;
  }
  if (c >= 0x370 && c < 0x400) {  // Greek
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB)) return c + 32;
    if (c == 0x3CF) return 0x3D7;
    if (c >= 0x3D8 && c <= 0x3EF) return pair_even(c);
    if (c == 0x3F4) return 0x3B8;
    if (c == 0x3F7 || c == 0x3FA) return c + 1;
    if (c == 0x3F9) return 0x3F2;
    if (c >= 0x3FD) return c - 130;
    if (c == 0x370 || c == 0x372 || c == 0x376) return c + 1;
    if (c == 0x37F) return 0x3F3;
    return c;
  }
  if (c >= 0x400 && c < 0x530) {  // Cyrillic
    if (c < 0x410) return c + 80;
    if (c < 0x430) return c + 32;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) return pair_even(c);
    if (c == 0x4C0) return 0x4CF;
    if (c >= 0x4C1 && c <= 0x4CE) return pair_odd(c);
    return c;
  }
  if (c >= 0x531 && c <= 0x556) return c + 48;                                      // Armenian
  if ((c >= 0x10A0 && c <= 0x10C5) || c == 0x10C7 || c == 0x10CD) return c + 7264;  // Georgian
  if ((c >= 0x1C90 && c <= 0x1CBA) || (c >= 0x1CBD && c <= 0x1CBF)) return c - 3008;
  if (c >= 0x1E00 && c < 0x1F00) {  // Latin Extended Additional
    if (c == 0x1E9E) return 0xDF;
    if (c <= 0x1E95 || c >= 0x1EA0) return pair_even(c);
    return c;
  }
  if (c >= 0x1F00 && c < 0x2000) return lower_greek_extended(c);
  if (c == 0x2126) return 0x3C9;
  if (c == 0x212A) return 'k';
  if (c == 0x212B) return 0xE5;
  if (c >= 0x2160 && c <= 0x216F) return c + 16;    // Roman numerals
  if (c >= 0x24B6 && c <= 0x24CF) return c + 26;    // circled letters
  if (c >= 0x2C00 && c <= 0x2C2F) return c + 48;    // Glagolitic
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;    // fullwidth Latin
  if (c >= 0x10400 && c <= 0x10427) return c + 40;  // Deseret
  return c;
}

// Windows-1252 meaning of the C1 range, as Python's html.unescape maps &#128;..&#159;.
constexpr char32_t kCp1252[32] = {0x20AC, 0x81,   0x201A, 0x192,  0x201E, 0x2026, 0x2020, 0x2021,
                                  0x2C6,  0x2030, 0x160,  0x2039, 0x152,  0x8D,   0x17D,  0x8F,
                                  0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                  0x2DC,  0x2122, 0x161,  0x203A, 0x153,  0x9D,   0x17E,  0x178};

// Legacy entity names (U+00A0..U+00FF in order) which HTML allows without ';'.
constexpr const char* kLatin1Names[96] = {
    "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",    "copy",   "ordf",
    "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn", "sup2",   "sup3",   "acute",  "micro",
    "para",   "middot", "cedil",  "sup1",   "ordm",   "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave",
    "Aacute", "Acirc",  "Atilde", "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",
    "Igrave", "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde", "Ouml",
    "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",  "szlig",  "agrave", "aacute",
    "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil", "egrave", "eacute", "ecirc",  "euml",   "igrave",
    "iacute", "icirc",  "iuml",   "eth",    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide",
    "oslash", "ugrave", "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml"};

struct NamedEntity {
  const char* name;
  char32_t cp;
};
// Other common names (semicolon required), plus the legacy ASCII ones handled below.
constexpr NamedEntity kNamed[] = {
    {"apos", '\''},     {"hellip", 0x2026}, {"mdash", 0x2014},  {"ndash", 0x2013},  {"lsquo", 0x2018},
    {"rsquo", 0x2019},  {"ldquo", 0x201C},  {"rdquo", 0x201D},  {"sbquo", 0x201A},  {"bdquo", 0x201E},
    {"lsaquo", 0x2039}, {"rsaquo", 0x203A}, {"bull", 0x2022},   {"trade", 0x2122},  {"TRADE", 0x2122},
    {"euro", 0x20AC},   {"OElig", 0x152},   {"oelig", 0x153},   {"Scaron", 0x160},  {"scaron", 0x161},
    {"Yuml", 0x178},    {"fnof", 0x192},    {"circ", 0x2C6},    {"tilde", 0x2DC},   {"ensp", 0x2002},
    {"emsp", 0x2003},   {"thinsp", 0x2009}, {"zwnj", 0x200C},   {"zwj", 0x200D},    {"lrm", 0x200E},
    {"rlm", 0x200F},    {"dagger", 0x2020}, {"Dagger", 0x2021}, {"permil", 0x2030}, {"prime", 0x2032},
    {"Prime", 0x2033},  {"larr", 0x2190},   {"uarr", 0x2191},   {"rarr", 0x2192},   {"darr", 0x2193},
    {"hearts", 0x2665}, {"star", 0x2606},   {"check", 0x2713},  {"infin", 0x221E},  {"alpha", 0x3B1},
    {"beta", 0x3B2},    {"gamma", 0x3B3},   {"delta", 0x3B4},   {"pi", 0x3C0},      {"sigma", 0x3C3},
    {"omega", 0x3C9},   {"mu", 0x3BC},      {"lambda", 0x3BB},  {"theta", 0x3B8},   {"Tab", '\t'},
    {"NewLine", '\n'},
};

struct EntityTables {
  std::unordered_map<std::string, char32_t> with_semicolon;  // "amp;" etc.
  std::unordered_map<std::string, char32_t> legacy;          // "amp" etc. (';' optional)
  EntityTables() {
    auto legacy_name = [&](const std::string& n, char32_t cp) {
      legacy[n] = cp;
      with_semicolon[n + ";"] = cp;
    };
    for (int i = 0; i < 96; ++i) legacy_name(kLatin1Names[i], 0xA0 + i);
    for (const char* n : {"amp", "AMP"}) legacy_name(n, '&');
    for (const char* n : {"lt", "LT"}) legacy_name(n, '<');
    for (const char* n : {"gt", "GT"}) legacy_name(n, '>');
    for (const char* n : {"quot", "QUOT"}) legacy_name(n, '"');
    legacy_name("COPY", 0xA9);
    legacy_name("REG", 0xAE);
    for (const auto& e : kNamed) with_semicolon[std::string(e.name) + ";"] = e.cp;
  }
};

const EntityTables& entities() {
  static const EntityTables tables;
  return tables;
}

bool is_hex(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Python's html._replace_charref for a numeric reference.
void append_charref(std::u32string& out, uint64_t num) {
  if (num == 0) {
    out += kReplacement;
    return;
  }
  if (num == 0x0D) {
    out += U'\r';
    return;
  }
  if (num >= 0x80 && num <= 0x9F) {
    out += kCp1252[num - 0x80];
    return;
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out += kReplacement;
    return;
  }
  bool invalid = (num >= 0x1 && num <= 0x8) || (num >= 0xE && num <= 0x1F) || num == 0x7F || num == 0xB ||
                 (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (!invalid) out += static_cast<char32_t>(num);
}

// Tries a numeric reference at text[i] == '&'; returns the index after it, or i if none.
size_t numeric_ref(const std::u32string& t, size_t i, bool require_semicolon, std::u32string& out) {
  size_t j = i + 1;
  if (j >= t.size() || t[j] != '#') return i;
  ++j;
  bool hex = j < t.size() && (t[j] == 'x' || t[j] == 'X');
  if (hex) ++j;
  size_t start = j;
  uint64_t num = 0;
  while (j < t.size() && (hex ? is_hex(t[j]) : (t[j] >= '0' && t[j] <= '9'))) {
    char32_t c = t[j];
    uint64_t d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    num = std::min<uint64_t>(num * (hex ? 16 : 10) + d, 0x7FFFFFFF);  // saturates: > 0x10FFFF
    ++j;
  }
  if (j == start) return i;
  bool semi = j < t.size() && t[j] == ';';
  if (require_semicolon && !semi) return i;
  append_charref(out, num);
  return semi ? j + 1 : j;
}

bool ascii_key(const std::u32string& t, size_t b, size_t e, std::string& key) {
  key.clear();
  for (size_t k = b; k < e; ++k) {
    if (t[k] >= 0x80) return false;
    key += static_cast<char>(t[k]);
  }
  return true;
}

// Tries a named reference at text[i] == '&' (Python: &([^\t\n\f <&#;]{1,32};?), exact name,
// else the longest legacy prefix); returns the index after what was consumed, or i.
size_t named_ref(const std::u32string& t, size_t i, bool require_semicolon, std::u32string& out) {
  size_t j = i + 1;
  while (j < t.size() && j - (i + 1) < 32) {
    char32_t c = t[j];
    if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
    ++j;
  }
  if (j == i + 1) return i;
  size_t end = (j < t.size() && t[j] == ';') ? j + 1 : j;
  const EntityTables& tab = entities();
  std::string key;
  if (ascii_key(t, i + 1, end, key)) {
    auto it = tab.with_semicolon.find(key);
    if (it != tab.with_semicolon.end()) {
      out += it->second;
      return end;
    }
    if (require_semicolon) return i;
    auto lg = tab.legacy.find(key);
    if (lg != tab.legacy.end()) {
      out += lg->second;
      return end;
    }
  } else if (require_semicolon) {
    return i;
  }
  if (require_semicolon) return i;
  for (size_t x = end - (i + 1) - 1; x >= 2; --x) {  // longest legacy prefix
    if (!ascii_key(t, i + 1, i + 1 + x, key)) continue;
    auto lg = tab.legacy.find(key);
    if (lg != tab.legacy.end()) {
      out += lg->second;
      return i + 1 + x;
    }
  }
  return i;
}

}  // namespace

std::u32string decode_utf8(const std::string& bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    unsigned char b = s[i];
    if (b < 0x80) {
      out += b;
      ++i;
      continue;
    }
    int len;
    char32_t cp;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
      cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      cp = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      cp = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out += kReplacement;
      ++i;
      continue;
    }
    int k = 1;
    for (; k < len; ++k) {
      if (i + k >= n) break;
      unsigned char c = s[i + k];
      if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (k == len)
      out += cp;
    else
      out += kReplacement;  // maximal subpart -> one U+FFFD
    i += k;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacement;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

std::string sanitize_utf8(const std::string& bytes) { return encode_utf8(decode_utf8(bytes)); }

bool is_letter(char32_t cp) { return in_table(kLetters, cp); }
bool is_number(char32_t cp) { return in_table(kNumbers, cp); }

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string to_lower(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == 0x130) {  // capital I with dot above -> i + combining dot above
      out += U'i';
      out += char32_t(0x307);
    } else if (c == 0x3A3) {  // final sigma: after a letter and not before one
      bool after = i > 0 && is_letter(text[i - 1]);
      bool before = i + 1 < text.size() && is_letter(text[i + 1]);
      out += (after && !before) ? char32_t(0x3C2) : char32_t(0x3C3);
    } else {
      out += lower_simple(c);
    }
  }
  return out;
}

std::u32string html_unescape(const std::u32string& text, bool require_semicolon) {
  if (text.find(U'&') == std::u32string::npos) return text;
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out += text[i++];
      continue;
    }
    size_t j = numeric_ref(text, i, require_semicolon, out);
    if (j == i) j = named_ref(text, i, require_semicolon, out);
    if (j == i) {
      out += text[i];
      ++j;
    }
    i = j;
  }
  return out;
}

std::u32string fix_text_basic(const std::u32string& in) {
  std::u32string text = in.find(U'<') == std::u32string::npos ? html_unescape(in, true) : in;
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {  // terminal escape
      size_t j = i + 2;
      while (j < text.size() && ((text[j] >= '0' && text[j] <= '9') || text[j] == ';')) ++j;
      if (j < text.size() && ((text[j] | 0x20) >= 'a' && (text[j] | 0x20) <= 'z')) {
        i = j;
        continue;
      }
    }
    if (c >= 0x80 && c <= 0x9F) c = kCp1252[c - 0x80];
    switch (c) {  // ligatures
      case 0x132: out += U"IJ"; continue;
      case 0x133: out += U"ij"; continue;
      case 0x1C7: out += U"LJ"; continue;
      case 0x1C8: out += U"Lj"; continue;
      case 0x1C9: out += U"lj"; continue;
      case 0x1CA: out += U"NJ"; continue;
      case 0x1CB: out += U"Nj"; continue;
      case 0x1CC: out += U"nj"; continue;
      case 0x1F1: out += U"DZ"; continue;
      case 0x1F2: out += U"Dz"; continue;
      case 0x1F3: out += U"dz"; continue;
      case 0xFB00: out += U"ff"; continue;
      case 0xFB01: out += U"fi"; continue;
      case 0xFB02: out += U"fl"; continue;
      case 0xFB03: out += U"ffi"; continue;
      case 0xFB04: out += U"ffl"; continue;
      case 0xFB06: out += U"st"; continue;
      default: break;
    }
    if (c >= 0xFF01 && c <= 0xFF5E) c = c - 0xFF01 + 0x21;  // fullwidth ASCII
    if (c == 0x3000) c = ' ';
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';  // curly quotes
    if (c >= 0x201C && c <= 0x201F) c = '"';
    bool control = c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
                   c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
    if (!control) out += c;
  }
  return out;
}

}  // namespace tinv::unicode
