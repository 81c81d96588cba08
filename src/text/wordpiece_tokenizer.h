// BERT WordPiece tokenizer (bert-base-uncased, as BLIP uses it), from a `vocab.txt`.
//
//   auto tok = tinv::WordPieceTokenizer::load("blip/vocab.txt");
//   tok.encode("a picture of");          // [101, 1037, 3861, 1997, 102]
//   tok.decode({1037, 4937, 102});       // "a cat" (special tokens skipped)
//
// Mirrors transformers' BertTokenizer (BasicTokenizer + WordpieceTokenizer):
//   1. cleanup: drop NUL, U+FFFD and control characters, map whitespace to ' ';
//   2. spaces around CJK ideographs;
//   3. whitespace split; per word: lowercase, strip accents (NFD, drop combining marks),
//      split off punctuation characters;
//   4. greedy longest-match WordPiece with `##` continuations; words longer than 100
//      characters or with no match become [UNK].
// Special tokens written in the text ([CLS], [SEP], [DEC], ...) are kept whole.
// Unicode coverage without ICU: lowercasing uses the C.UTF-8 locale (towlower); accent
// stripping covers Latin-1 Supplement, Latin Extended-A and the combining diacritics block
// U+0300-U+036F; punctuation is ASCII punctuation plus the Unicode punctuation blocks
// (General Punctuation, CJK, fullwidth forms, Latin-1 punctuation).
// vocab.txt: one token per line, id = line number (0-based). It must hold [PAD], [UNK], [CLS]
// and [SEP]; load() throws tinv::Error naming the file and the missing token otherwise.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tinv {

class WordPieceTokenizer {
 public:
  static WordPieceTokenizer load(const std::string& vocab_path, bool lowercase = true);
  // From tokens in id order; `source` names the vocabulary in errors.
  static WordPieceTokenizer from_tokens(std::vector<std::string> tokens, const std::string& source,
                                        bool lowercase = true);

  // Adds a special token (e.g. BLIP's "[DEC]" = 30522) unless the vocabulary already has it.
  // Its id is the next free id, or `id` when given (must not be taken by another token).
  int64_t add_special_token(const std::string& token, int64_t id = -1);

  // Word pieces of `text` (no [CLS]/[SEP]).
  std::vector<std::string> tokenize(const std::string& text) const;
  // Ids of `text`, wrapped in [CLS] ... [SEP] when add_special_tokens.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // Text of `ids`: pieces joined with spaces, " ##" removed, BERT's clean-up of spaces before
  // punctuation and contractions. Special tokens are dropped when skip_special_tokens;
  // out-of-range ids read as [UNK].
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const;

  int64_t token_to_id(const std::string& token) const;  // -1 when absent
  std::string id_to_token(int64_t id) const;            // "[UNK]" when out of range
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  bool is_special(int64_t id) const;

  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }

 private:
  void wordpiece(const std::string& word, std::vector<std::string>& out) const;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::string> specials_;  // kept whole when written in the text
  bool lowercase_ = true;
  int64_t pad_id_ = -1, unk_id_ = -1, cls_id_ = -1, sep_id_ = -1;
};

}  // namespace tinv
