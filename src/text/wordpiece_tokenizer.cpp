#include "text/wordpiece_tokenizer.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>

#include "common/error.h"
#include "common/fs.h"
#include "text/unicode.h"

namespace tinv {
namespace {

constexpr size_t kMaxWordChars = 100;

// --- character classes (BERT's _is_whitespace, _is_control, _is_punctuation) -------------

locale_t utf8_locale() {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  return loc;
}

bool is_whitespace(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  if (c < 0x80) return false;
  // Unicode category Zs.
  return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  // Cc and the common Cf characters.
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF;
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  // Unicode category P* in the blocks captions and prompts use.
  return c == 0xA1 || c == 0xA7 || c == 0xAB || c == 0xB6 || c == 0xB7 || c == 0xBB || c == 0xBF ||
         (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x2043) || (c >= 0x2045 && c <= 0x2051) ||
         (c >= 0x2053 && c <= 0x205E) || (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) ||
         (c >= 0x3014 && c <= 0x301F) || (c >= 0xFF01 && c <= 0xFF03) || (c >= 0xFF05 && c <= 0xFF0A) ||
         (c >= 0xFF0C && c <= 0xFF0F) || c == 0xFF1A || c == 0xFF1B || c == 0xFF1F || c == 0xFF20 ||
         (c >= 0xFF3B && c <= 0xFF3D) || c == 0xFF3F || c == 0xFF5B || c == 0xFF5D || (c >= 0xFF5F && c <= 0xFF65);
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (locale_t loc = utf8_locale()) return static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), loc));
  return c;
}

// Base letter of a precomposed Latin letter (NFD minus marks), 0 when it has none; '.' = none.
constexpr const char* kLatin1Base = "aaaaaa.ceeeeiiii.nooooo..uuuuy.y";  // U+00E0..U+00FF
constexpr const char* kLatinExtABase =                                   // U+0100..U+017F
    "aaaaaaccccccccdd..eeeeeeeeeegggggggghh..iiiiiiiii....jjkk.llllll....nnnnnn...oooooo..rrrrrrssssssss"
    "tttt..uuuuuuuuuuuuwwyyyzzzzzz.";

// Lowercases (when asked) and strips accents of one word; appends to out.
std::u32string normalize_word(const std::u32string& w, bool lowercase) {
  std::u32string out;
  for (char32_t c : w) {
    if (!lowercase) {
      out.push_back(c);
      continue;
    }
    c = to_lower(c);
    if (c >= 0x300 && c <= 0x36F) continue;  // combining diacritical marks (Mn)
    if (c >= 0xC0 && c <= 0xFF) {
      char b = kLatin1Base[c >= 0xE0 ? c - 0xE0 : c - 0xC0];
      if (c != 0xD7 && c != 0xF7 && b != '.') c = static_cast<char32_t>(b);
    } else if (c >= 0x100 && c <= 0x17F) {
      char b = kLatinExtABase[c - 0x100];
      if (b != '.') c = static_cast<char32_t>(b);
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::load(const std::string& vocab_path, bool lowercase) {
  std::string text = read_text_file(vocab_path);
  std::vector<std::string> tokens;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);
    pos = nl + 1;
  }
  return from_tokens(std::move(tokens), vocab_path, lowercase);
}

WordPieceTokenizer WordPieceTokenizer::from_tokens(std::vector<std::string> tokens, const std::string& source,
                                                   bool lowercase) {
  WordPieceTokenizer t;
  t.lowercase_ = lowercase;
  t.tokens_ = std::move(tokens);
  for (size_t i = 0; i < t.tokens_.size(); ++i) t.ids_.emplace(t.tokens_[i], static_cast<int64_t>(i));
  auto need = [&](const char* name) {
    int64_t id = t.token_to_id(name);
    TINV_CHECK(id >= 0, source, "vocabulary lacks the special token ", name);
    t.specials_.push_back(name);
    return id;
  };
  t.pad_id_ = need("[PAD]");
  t.unk_id_ = need("[UNK]");
  t.cls_id_ = need("[CLS]");
  t.sep_id_ = need("[SEP]");
  if (t.token_to_id("[MASK]") >= 0) t.specials_.push_back("[MASK]");
  return t;
}

int64_t WordPieceTokenizer::add_special_token(const std::string& token, int64_t id) {
  int64_t have = token_to_id(token);
  if (have < 0) {
    if (id < 0) id = vocab_size();
    TINV_CHECK(id >= vocab_size(), "tokenizer", "id ", id, " for ", token, " is taken by ",
               tokens_[static_cast<size_t>(id)]);
    while (vocab_size() < id) tokens_.push_back("");  // unused ids up to the requested one
    tokens_.push_back(token);
    ids_[token] = id;
    have = id;
  }
  if (std::find(specials_.begin(), specials_.end(), token) == specials_.end()) specials_.push_back(token);
  return have;
}

int64_t WordPieceTokenizer::token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

std::string WordPieceTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) return "[UNK]";
  return tokens_[static_cast<size_t>(id)];
}

bool WordPieceTokenizer::is_special(int64_t id) const {
  std::string tok = id_to_token(id);
  return std::find(specials_.begin(), specials_.end(), tok) != specials_.end();
}

// WordpieceTokenizer.tokenize on one word (already normalised and split).
void WordPieceTokenizer::wordpiece(const std::string& word, std::vector<std::string>& out) const {
  std::u32string chars = unicode::decode_utf8(word);
  if (chars.size() > kMaxWordChars) {
    out.push_back("[UNK]");
    return;
  }
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start < chars.size()) {
    size_t end = chars.size();
    std::string found;
    while (start < end) {
      std::string sub = unicode::encode_utf8(chars.substr(start, end - start));
      if (start > 0) sub = "##" + sub;
      if (ids_.count(sub)) {
        found = sub;
        break;
      }
      --end;
    }
    if (found.empty()) {
      out.push_back("[UNK]");
      return;
    }
    pieces.push_back(found);
    start = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

std::vector<std::string> WordPieceTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  // Special tokens written in the text stay whole; the rest goes through BasicTokenizer.
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t best = std::string::npos;
    std::string special;
    for (const auto& s : specials_) {
      size_t f = text.find(s, pos);
      if (f < best) best = f, special = s;
    }
    std::string chunk = text.substr(pos, best == std::string::npos ? std::string::npos : best - pos);
    // BasicTokenizer: clean, CJK spacing, whitespace split, normalise, punctuation split.
    std::u32string cleaned;
    for (char32_t c : unicode::decode_utf8(chunk)) {
      if (c == 0 || c == 0xFFFD || is_control(c)) continue;
      if (is_cjk(c)) {
        cleaned += U' ';
        cleaned += c;
        cleaned += U' ';
      } else {
        cleaned += is_whitespace(c) ? U' ' : c;
      }
    }
    std::u32string word;
    auto flush = [&] {
      if (word.empty()) return;
      std::u32string norm = normalize_word(word, lowercase_);
      std::u32string piece;
      for (char32_t c : norm) {
        if (is_punctuation(c)) {
          if (!piece.empty()) wordpiece(unicode::encode_utf8(piece), out);
          piece.clear();
          wordpiece(unicode::encode_utf8(std::u32string(1, c)), out);
        } else {
          piece += c;
        }
      }
      if (!piece.empty()) wordpiece(unicode::encode_utf8(piece), out);
      word.clear();
    };
    for (char32_t c : cleaned) {
      if (c == U' ')
        flush();
      else
        word += c;
    }
    flush();
    if (best == std::string::npos) break;
    out.push_back(special);
    pos = best + special.size();
  }
  return out;
}

std::vector<int64_t> WordPieceTokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int64_t> ids;
  if (add_special_tokens) ids.push_back(cls_id_);
  for (const auto& piece : tokenize(text)) {
    int64_t id = token_to_id(piece);
    ids.push_back(id >= 0 ? id : unk_id_);
  }
  if (add_special_tokens) ids.push_back(sep_id_);
  return ids;
}

std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string text;
  for (int64_t id : ids) {
    if (skip_special_tokens && (is_special(id) || id < 0 || id >= vocab_size())) continue;
    const std::string tok = id_to_token(id);
    if (tok.compare(0, 2, "##") == 0 && !text.empty()) {
      text += tok.substr(2);
    } else {
      if (!text.empty()) text += ' ';
      text += tok;
    }
  }
  // transformers' clean_up_tokenization.
  static const std::pair<const char*, const char*> kCleanups[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kCleanups) {
    std::string f = from;
    for (size_t p = text.find(f); p != std::string::npos; p = text.find(f, p)) {
      text.replace(p, f.size(), to);
      p += std::string(to).size();
    }
  }
  return text;
}

}  // namespace tinv
