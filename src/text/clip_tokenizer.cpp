// CLIP BPE tokenizer; mirrors openai/CLIP simple_tokenizer.py (and HF CLIPTokenizer with ftfy).
#include "text/clip_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <mutex>

#include "common/error.h"
#include "common/fs.h"
#include "io/json_config.h"
#include "text/unicode.h"

namespace tinv {

namespace {

constexpr int64_t kMaxVocabId = int64_t(1) << 24;
constexpr size_t kCacheLimit = size_t(1) << 16;  // words; the cache is cleared when full
const std::string kEndOfWord = "</w>";

bool is_printable_byte(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

// GPT-2 / CLIP bytes_to_unicode: printable bytes map to themselves, the others to 256 + n.
struct ByteTables {
  std::string encode[256];                       // byte -> UTF-8 of its symbol
  std::unordered_map<char32_t, uint8_t> decode;  // symbol -> byte
  ByteTables() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      char32_t cp = is_printable_byte(b) ? char32_t(b) : char32_t(256 + n++);
      unicode::append_utf8(encode[b], cp);
      decode[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

// End of the pre-token that starts at s[i] (not a space, not a special token): one of
// 's|'t|'re|'ve|'m|'ll|'d, \p{L}+, one \p{N}, or [^\s\p{L}\p{N}]+, first that matches.
size_t pre_token_end(const std::u32string& s, size_t i) {
  using namespace unicode;
  size_t n = s.size(), j = i + 1;
  char32_t c = s[i];
  if (c == '\'' && i + 1 < n) {
    char32_t d = s[i + 1], e = i + 2 < n ? s[i + 2] : 0;
    if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
    if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
  }
  if (is_letter(c)) {
    while (j < n && is_letter(s[j])) ++j;
  } else if (!is_number(c)) {
    while (j < n && !is_space(s[j]) && !is_letter(s[j]) && !is_number(s[j])) ++j;
  }
  return j;
}

// A special-token field: "text" or {"content": "text", ...} (HF AddedToken); "" when absent.
std::string token_field(const nlohmann::json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return "";
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw Error(path, str_cat("field '", key, "' must be a string or {\"content\": string}"));
}

}  // namespace

struct ClipTokenizer::Vocab {
  std::unordered_map<std::string, int64_t> encoder;  // vocab.json
  std::vector<std::string> decoder;                  // id -> token ("" for unused ids)
  std::unordered_map<std::string, int> ranks;        // "a b" -> merge rank
  std::u32string bos_text, eos_text;                 // lowercased, for the pattern
};

struct ClipTokenizer::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int64_t>> words;
};

ClipTokenizer ClipTokenizer::load(const std::string& dir) {
  std::string pad = kEosToken, bos = kBosToken, eos = kEosToken, unk;
  int64_t max_length = 77;
  // tokenizer_config.json first, special_tokens_map.json overrides (as transformers does).
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    std::string path = join_path(dir, name);
    if (!file_exists(path)) continue;
    nlohmann::json j = read_json_file(path);
    TINV_CHECK(j.is_object(), path, "expected a JSON object");
    for (auto [key, target] : {std::pair<const char*, std::string*>{"pad_token", &pad},
                               {"bos_token", &bos},
                               {"eos_token", &eos},
                               {"unk_token", &unk}}) {
      std::string v = token_field(j, key, path);
      if (!v.empty()) *target = v;
    }
    if (j.contains("model_max_length") && !j["model_max_length"].is_null()) {
      const auto& m = j["model_max_length"];
      TINV_CHECK(m.is_number(), path, "field 'model_max_length' must be a number");
      double v = m.get<double>();
      TINV_CHECK(v >= 2 && v <= (1 << 20) && v == static_cast<double>(static_cast<int64_t>(v)), path,
                 "field 'model_max_length' must be an integer in [2, 1048576], got ", m.dump());
      max_length = static_cast<int64_t>(v);
    }
  }
  return build(join_path(dir, "vocab.json"), join_path(dir, "merges.txt"), pad, max_length, bos, eos,
               unk.empty() ? eos : unk, dir);
}

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_path, const std::string& merges_path,
                                        const std::string& pad_token, int64_t max_length) {
  return build(vocab_path, merges_path, pad_token, max_length, kBosToken, kEosToken, kEosToken, vocab_path);
}

namespace {

// vocab.json: {"token": id, ...} into token -> id and id -> token ("" for unused ids).
void read_vocab_json(const std::string& vocab_path, std::unordered_map<std::string, int64_t>& encoder,
                     std::vector<std::string>& decoder) {
  nlohmann::json j = read_json_file(vocab_path);
  TINV_CHECK(j.is_object(), vocab_path, "expected a JSON object of token -> id, got ", j.type_name());
  TINV_CHECK(!j.empty(), vocab_path, "the vocabulary is empty");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    TINV_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < kMaxVocabId, vocab_path, "token '",
               it.key(), "' must map to an integer id in [0, ", kMaxVocabId, "), got ", v.dump());
    int64_t id = v.get<int64_t>();
    if (static_cast<int64_t>(decoder.size()) <= id) decoder.resize(id + 1);
    TINV_CHECK(decoder[id].empty(), vocab_path, "id ", id, " is used by both '", decoder[id], "' and '", it.key(), "'");
    decoder[id] = it.key();
    encoder.emplace(it.key(), id);
  }
}

// merges.txt: "#version" header, then "a b" per line, rank = line order; "a b" -> rank for the
// merges whose result is in `encoder`.
void read_merges(const std::string& merges_path, const std::unordered_map<std::string, int64_t>& encoder,
                 std::unordered_map<std::string, int>& ranks) {
  TINV_CHECK(file_exists(merges_path), merges_path, "missing file");
  std::string merges = read_text_file(merges_path);
  size_t pos = 0;
  int line_no = 0, rank = 0;
  while (pos < merges.size()) {
    size_t end = merges.find('\n', pos);
    if (end == std::string::npos) end = merges.size();
    std::string line = merges.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    TINV_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() && line.find(' ', sp + 1) == std::string::npos,
               merges_path, "line ", line_no, ": expected two symbols separated by one space, got '",
               line.substr(0, 80), "'");
    // A merge whose result is not in the vocabulary can never give a token: skip it (this is
    // also what truncating a longer merges list to the vocabulary amounts to).
    if (encoder.count(line.substr(0, sp) + line.substr(sp + 1)))
      ranks[line] = rank;  // later duplicates win, as Python's dict(zip(...)) does
    ++rank;
  }
  TINV_CHECK(line_no > 0, merges_path, "empty merges file");
}

}  // namespace

ClipTokenizer ClipTokenizer::build(const std::string& vocab_path, const std::string& merges_path,
                                   const std::string& pad_token, int64_t max_length, const std::string& bos_token,
                                   const std::string& eos_token, const std::string& unk_token,
                                   const std::string& where) {
  TINV_CHECK(max_length >= 2, where, "max_length must be >= 2 (BOS and EOS), got ", max_length);
  auto vocab = std::make_shared<Vocab>();
  read_vocab_json(vocab_path, vocab->encoder, vocab->decoder);
  read_merges(merges_path, vocab->encoder, vocab->ranks);

  ClipTokenizer tok;
  auto need = [&](const std::string& token, const char* what) {
    auto it = vocab->encoder.find(token);
    TINV_CHECK(it != vocab->encoder.end(), vocab_path, "the vocabulary has no ", what, " token '", token, "'");
    return it->second;
  };
  tok.bos_id_ = need(bos_token, "bos");
  tok.eos_id_ = need(eos_token, "eos");
  tok.pad_id_ = need(pad_token, "pad");
  tok.unk_id_ = need(unk_token, "unk");
  tok.max_length_ = max_length;
  vocab->bos_text = unicode::to_lower(unicode::decode_utf8(bos_token));
  vocab->eos_text = unicode::to_lower(unicode::decode_utf8(eos_token));
  tok.vocab_ = std::move(vocab);
  tok.cache_ = std::make_shared<Cache>();
  return tok;
}

std::string ClipTokenizer::clean_text(const std::string& text) {
  using namespace unicode;
  std::u32string t = fix_text_basic(decode_utf8(text));
  t = html_unescape(html_unescape(t));
  std::u32string out;
  out.reserve(t.size());
  for (char32_t c : t) {  // collapse whitespace runs, strip
    if (is_space(c)) {
      if (!out.empty() && out.back() != U' ') out += U' ';
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == U' ') out.pop_back();
  return encode_utf8(to_lower(out));
}

int64_t ClipTokenizer::vocab_id(const std::string& token) const {
  auto it = vocab_->encoder.find(token);
  return it == vocab_->encoder.end() ? -1 : it->second;
}

// BPE of one pre-tokenised word (UTF-8), appending its ids.
void ClipTokenizer::bpe_word(const std::string& word, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const ByteTables& bt = byte_tables();
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char b : word) symbols.push_back(bt.encode[b]);
  symbols.back() += kEndOfWord;
  std::string key;
  while (symbols.size() > 1) {
    int best = INT_MAX;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto it = vocab_->ranks.find(key);
      if (it != vocab_->ranks.end() && it->second < best) {
        best = it->second;
        best_i = i;
      }
    }
    if (best == INT_MAX) break;
    const std::string first = symbols[best_i], second = symbols[best_i + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size();) {  // every non-overlapping occurrence, left to right
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        ++i;
      }
    }
    symbols.swap(merged);
  }
  std::vector<int64_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) {
    int64_t id = vocab_id(s);
    ids.push_back(id >= 0 ? id : unk_id_);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->words.size() >= kCacheLimit) cache_->words.clear();
  cache_->words.emplace(word, std::move(ids));
}

// CLIP's pattern over cleaned text (no added tokens inside): special tokens | 's|'t|'re|'ve|'m|'ll|'d
// | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+, first alternative that matches at each position.
void ClipTokenizer::tokenize_piece(const std::u32string& s, std::vector<int64_t>& out) const {
  using namespace unicode;
  auto starts_with = [&](size_t i, const std::u32string& p) { return !p.empty() && s.compare(i, p.size(), p) == 0; };
  size_t i = 0, n = s.size();
  while (i < n) {
    char32_t c = s[i];
    if (is_space(c)) {
      ++i;
      continue;
    }
    if (starts_with(i, vocab_->bos_text)) {
      out.push_back(bos_id_);
      i += vocab_->bos_text.size();
      continue;
    }
    if (starts_with(i, vocab_->eos_text)) {
      out.push_back(eos_id_);
      i += vocab_->eos_text.size();
      continue;
    }
    size_t j = pre_token_end(s, i);
    std::string word;
    for (size_t k = i; k < j; ++k) append_utf8(word, s[k]);
    bpe_word(word, out);
    i = j;
  }
}

std::vector<std::string> ClipTokenizer::pre_tokenize(const std::string& cleaned_text) {
  std::u32string s = unicode::decode_utf8(cleaned_text);
  std::vector<std::string> words;
  for (size_t i = 0; i < s.size();) {
    if (unicode::is_space(s[i])) {
      ++i;
      continue;
    }
    size_t j = pre_token_end(s, i);
    words.push_back(unicode::encode_utf8(s.substr(i, j - i)));
    i = j;
  }
  return words;
}

const std::string& ClipTokenizer::byte_symbol(uint8_t b) { return byte_tables().encode[b]; }

std::vector<uint8_t> ClipTokenizer::byte_vocab_order() {
  std::vector<uint8_t> order;  // bytes_to_unicode's insertion order: printable bytes, then the rest
  for (int pass = 0; pass < 2; ++pass)
    for (int b = 0; b < 256; ++b)
      if (is_printable_byte(b) == (pass == 0)) order.push_back(static_cast<uint8_t>(b));
  return order;
}

std::vector<int64_t> ClipTokenizer::tokenize(const std::string& text) const {
  std::u32string s = unicode::decode_utf8(clean_text(text));
  std::vector<int64_t> out;
  if (added_.empty()) {
    tokenize_piece(s, out);
    return out;
  }
  // Added tokens, longest first: split them out, tokenise the text between them.
  std::vector<std::pair<std::u32string, int64_t>> patterns;
  for (const auto& [text_key, id] : added_) patterns.emplace_back(unicode::decode_utf8(text_key), id);
  std::stable_sort(patterns.begin(), patterns.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const std::pair<std::u32string, int64_t>* hit = nullptr;
    for (const auto& p : patterns) {
      if (s.compare(i, p.first.size(), p.first) == 0) {
        hit = &p;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    tokenize_piece(s.substr(start, i - start), out);
    out.push_back(hit->second);
    i += hit->first.size();
    start = i;
  }
  tokenize_piece(s.substr(start), out);
  return out;
}

ClipTokenizer::Encoding ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> tokens = tokenize(text);
  Encoding enc;
  size_t keep = static_cast<size_t>(max_length_ - 2);
  enc.truncated = tokens.size() > keep;
  if (enc.truncated) tokens.resize(keep);
  enc.ids.reserve(max_length_);
  enc.ids.push_back(bos_id_);
  enc.ids.insert(enc.ids.end(), tokens.begin(), tokens.end());
  enc.ids.push_back(eos_id_);
  enc.ids.resize(max_length_, pad_id_);
  return enc;
}

bool ClipTokenizer::is_vocab_word(const std::string& text) const {
  if (vocab_id(text) >= 0) return true;
  std::vector<int64_t> ids;
  tokenize_piece(unicode::decode_utf8(clean_text(text)), ids);
  return ids.size() == 1;
}

int64_t ClipTokenizer::added_token_id(const std::string& token) const {
  auto it = added_.find(clean_text(token));
  return it == added_.end() ? -1 : it->second;
}

int64_t ClipTokenizer::add_token(const std::string& token) {
  int64_t id = vocab_size();
  add_token(token, id);
  return id;
}

void ClipTokenizer::add_token(const std::string& token, int64_t id) {
  std::string where = "added token '" + token + "'";
  std::string key = clean_text(token);
  TINV_CHECK(!key.empty(), where, "is empty after cleanup");
  TINV_CHECK(!is_vocab_word(token), where,
             "collides with the vocabulary (it is, or tokenises to, a single existing token)");
  TINV_CHECK(!added_.count(key), where, "was already added (id ", added_.at(key), ")");
  TINV_CHECK(id >= base_vocab_size() && id < kMaxVocabId, where, "id ", id, " must be >= the base vocabulary size ",
             base_vocab_size());
  TINV_CHECK(!added_names_.count(id), where, "id ", id, " is already used by added token '",
             added_names_.count(id) ? added_names_.at(id) : "", "'");
  added_.emplace(key, id);
  added_names_.emplace(id, token);
}

int64_t ClipTokenizer::base_vocab_size() const { return static_cast<int64_t>(vocab_->decoder.size()); }

int64_t ClipTokenizer::vocab_size() const {
  int64_t n = base_vocab_size();
  return added_names_.empty() ? n : std::max(n, added_names_.rbegin()->first + 1);
}

std::string ClipTokenizer::token_string(int64_t id) const {
  if (id >= 0 && id < base_vocab_size() && !vocab_->decoder[id].empty()) return vocab_->decoder[id];
  auto it = added_names_.find(id);
  TINV_CHECK(it != added_names_.end(), "ClipTokenizer", "unknown token id ", id, " (vocabulary ", base_vocab_size(),
             ", ", added_names_.size(), " added)");
  return it->second;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  size_t end = ids.size();
  if (pad_id_ != eos_id_) {  // drop the padding after the last EOS
    auto last_eos = std::find(ids.rbegin(), ids.rend(), eos_id_);
    if (last_eos != ids.rend() && std::all_of(ids.rbegin(), last_eos, [&](int64_t id) { return id == pad_id_; }))
      end = ids.rend() - last_eos - 1;
  }
  const ByteTables& bt = byte_tables();
  std::string bytes;
  for (size_t k = 0; k < end; ++k) {
    int64_t id = ids[k];
    if (id == bos_id_ || id == eos_id_) continue;
    std::string tok = token_string(id);
    if (added_names_.count(id)) {
      bytes += tok + " ";
      continue;
    }
    bool word_end = tok.size() >= kEndOfWord.size() &&
                    tok.compare(tok.size() - kEndOfWord.size(), kEndOfWord.size(), kEndOfWord) == 0;
    if (word_end) tok.resize(tok.size() - kEndOfWord.size());
    for (char32_t c : unicode::decode_utf8(tok)) {
      auto it = bt.decode.find(c);
      if (it != bt.decode.end())
        bytes += static_cast<char>(it->second);
      else
        unicode::append_utf8(bytes, c);
    }
    if (word_end) bytes += ' ';
  }
  std::string text = unicode::sanitize_utf8(bytes);
  size_t b = text.find_first_not_of(' '), e = text.find_last_not_of(' ');
  return b == std::string::npos ? "" : text.substr(b, e - b + 1);
}

}  // namespace tinv
