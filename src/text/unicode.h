// Small Unicode toolkit for the tokenizers, without ICU: UTF-8 decoding that never fails,
// table-driven General Category checks (letters L*, numbers N*), Python-compatible whitespace,
// lowercase mapping, and HTML entity unescaping as Python's html.unescape does it.
//
// Coverage of the letter / number tables (src/text/unicode.cpp): Latin (Basic, Latin-1,
// Extended-A/B/C/D/E, IPA, Extended Additional, ligatures, fullwidth), Greek (incl. Extended),
// Cyrillic (incl. Supplement/Extended), Armenian, Georgian, Hebrew, Arabic (incl. Supplement and
// presentation forms), Devanagari, Bengali, Thai, Hangul (Jamo, compatibility, syllables),
// Hiragana, Katakana, Bopomofo, CJK ideographs (BMP, Extension A, Extensions B-G, compatibility),
// Yi, letterlike symbols, the common number forms (superscripts, fractions, Roman numerals,
// circled numbers) and the decimal digits of the scripts above. Letters of other scripts are
// classified as "neither letter nor number" (combining marks always are, as in Unicode).
// Lowercasing covers Latin, Greek (with final sigma), Cyrillic, Armenian, Georgian, Glagolitic,
// Deseret, Roman numerals, circled letters and fullwidth Latin.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tinv::unicode {

constexpr char32_t kReplacement = 0xFFFD;

// Decodes UTF-8; every byte that does not start a valid, minimal, non-surrogate sequence becomes
// one U+FFFD (as Python's bytes.decode("utf-8", errors="replace") does per maximal subpart).
std::u32string decode_utf8(const std::string& bytes);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(const std::u32string& text);
// Replaces invalid UTF-8 sequences by U+FFFD (decode + encode).
std::string sanitize_utf8(const std::string& bytes);

bool is_letter(char32_t cp);  // General Category L* (Lu, Ll, Lt, Lm, Lo), per the tables above
bool is_number(char32_t cp);  // General Category N* (Nd, Nl, No)
bool is_space(char32_t cp);   // Python str.isspace() / regex \s

// Lowercase as Python's str.lower() for the covered scripts (U+0130 gives two code points;
// capital sigma becomes final sigma at the end of a word).
std::u32string to_lower(const std::u32string& text);

// Python html.unescape: &name; (the common HTML5 names, plus the legacy names that may omit the
// semicolon), &#123; and &#x7b; (semicolon optional), with Python's rules for invalid numbers.
// With require_semicolon (ftfy's variant) only references ending in ';' are replaced.
std::u32string html_unescape(const std::u32string& text, bool require_semicolon = false);

// The cheap, deterministic parts of ftfy.fix_text with its defaults: HTML entities ending in ';'
// unescaped when the text holds no '<', terminal escapes (ESC [ ... letter) removed, C1 controls
// read as Windows-1252, Latin ligatures split, fullwidth ASCII and U+3000 narrowed, curly quotes
// straightened, control characters removed. Not done: mojibake repair, NFC normalisation.
std::u32string fix_text_basic(const std::u32string& text);

}  // namespace tinv::unicode
