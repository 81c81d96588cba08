// CLIP byte-level BPE tokenizer (the OpenAI CLIP / HF CLIPTokenizer algorithm, see
// ../shared/docs/FORMATS.md "CLIP BPE tokenizer"), with added tokens for textual inversion.
//
//   auto tok = tinv::ClipTokenizer::load("model/tokenizer");   // vocab.json, merges.txt, configs
//   int64_t id = tok.add_token("<cat-toy>");                    // 49408 for the CLIP vocabulary
//   auto enc = tok.encode("a photo of <cat-toy>");              // BOS ... EOS, padded to 77
//   if (enc.truncated) warn("prompt too long");
//   std::string text = tok.decode(enc.ids);                     // "a photo of <cat-toy>"
//
// Text processing, in order:
//  1. UTF-8 decoding; invalid bytes become U+FFFD (one per maximal ill-formed subpart, as
//     Python's errors="replace"), which then tokenises like any other symbol. Never throws.
//  2. Cleanup: the cheap parts of ftfy.fix_text (control characters removed, C1 controls read as
//     Windows-1252, curly quotes straightened, Latin ligatures split, fullwidth ASCII narrowed,
//     HTML entities ending in ';' unescaped when the text holds no '<'), then HTML-unescape twice,
//     whitespace runs collapsed, stripped, lowercased. Not done: ftfy's mojibake repair and NFC.
//  3. Added tokens are split out of the cleaned text, leftmost then longest match; their text is
//     cleaned the same way when added, so "<Cat>" matches "<Cat>" and "<cat>".
//  4. Every other piece is pre-tokenised by the CLIP pattern (special tokens; 's 't 're 've 'm
//     'll 'd; letter runs; one number; runs of other non-space characters) and each word is
//     BPE-encoded over its byte-to-unicode mapped UTF-8 with "</w>" on the last symbol, lowest
//     merge rank first (results cached per word). Letters/numbers: src/text/unicode.h.
//
// Loading errors (missing or unreadable files, invalid JSON, a vocab that is not an object of
// string -> non-negative integer id, malformed merges lines, no bos/eos/pad in the vocabulary)
// throw tinv::Error naming the file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace tinv {

class ClipTokenizer {
 public:
  struct Encoding {
    std::vector<int64_t> ids;  // max_length ids: BOS, tokens, EOS, padding
    bool truncated = false;    // tokens were dropped to fit (callers should warn)
  };

  static constexpr const char* kBosToken = "<|startoftext|>";
  static constexpr const char* kEosToken = "<|endoftext|>";

  // A diffusers `tokenizer/` folder: vocab.json, merges.txt, and when present
  // tokenizer_config.json / special_tokens_map.json (pad_token, bos/eos/unk names,
  // model_max_length; defaults: pad "<|endoftext|>", 77).
  static ClipTokenizer load(const std::string& dir);
  static ClipTokenizer from_files(const std::string& vocab_path, const std::string& merges_path,
                                  const std::string& pad_token = kEosToken, int64_t max_length = 77);

  // BPE ids of `text` without BOS/EOS, not truncated.
  std::vector<int64_t> tokenize(const std::string& text) const;
  // BOS + at most max_length-2 tokens + EOS, padded to max_length with pad_id().
  Encoding encode(const std::string& text) const;

  // Adds a placeholder token with the next free id (base_vocab_size() for the first one) and
  // returns its id. Throws tinv::Error naming the token when it is empty after cleanup, already
  // added, or collides with the vocabulary (see is_vocab_word).
  int64_t add_token(const std::string& token);
  // Same with an explicit id, which must be >= base_vocab_size() and not used yet.
  void add_token(const std::string& token, int64_t id);
  // True when `text` is a vocabulary entry itself ("cat</w>", "<|endoftext|>") or would
  // tokenise to exactly one base-vocabulary token ("cat", "!"): such placeholders collide.
  bool is_vocab_word(const std::string& text) const;
  // Id of an added token (given as added), or -1.
  int64_t added_token_id(const std::string& token) const;

  int64_t base_vocab_size() const;  // max vocab.json id + 1
  int64_t vocab_size() const;       // including added tokens: max id + 1
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t max_length() const { return max_length_; }

  // ids -> text: "</w>" ends a word (a space), BOS/EOS dropped, the padding after the last EOS
  // dropped, added tokens printed as given; bytes that do not form valid UTF-8 become U+FFFD.
  // Throws tinv::Error for an id that is neither in the vocabulary nor added.
  std::string decode(const std::vector<int64_t>& ids) const;
  // The vocabulary string of an id ("cat</w>", byte-level symbols as in vocab.json) or the
  // added token. Throws tinv::Error for unknown ids.
  std::string token_string(int64_t id) const;

  // The cleanup of step 2 (exposed for tests and captions).
  static std::string clean_text(const std::string& text);
  // The pre-tokenisation of step 4 over already-cleaned text, without special tokens: the words
  // BPE runs on, as UTF-8 ("a red-star" -> "a", "red", "-", "star"). Used by the BPE trainer.
  static std::vector<std::string> pre_tokenize(const std::string& cleaned_text);
  // bytes_to_unicode: the vocabulary symbol (UTF-8) of byte b ('a' -> "a", ' ' -> "Ġ").
  static const std::string& byte_symbol(uint8_t b);
  // The 256 bytes in vocabulary order: id i (and i + 256 with "</w>") is byte_symbol(order[i]).
  static std::vector<uint8_t> byte_vocab_order();

 private:
  struct Vocab;  // immutable vocabulary and merges, shared between copies
  struct Cache;  // word -> ids, shared between copies (thread-safe)
  ClipTokenizer() = default;
  static ClipTokenizer build(const std::string& vocab_path, const std::string& merges_path,
                             const std::string& pad_token, int64_t max_length, const std::string& bos_token,
                             const std::string& eos_token, const std::string& unk_token, const std::string& where);
  void tokenize_piece(const std::u32string& piece, std::vector<int64_t>& out) const;
  void bpe_word(const std::string& word, std::vector<int64_t>& out) const;
  int64_t vocab_id(const std::string& token) const;  // -1 when absent

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<Cache> cache_;
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0, max_length_ = 77;
  // Added tokens: cleaned text -> id, and id -> the token as given.
  std::map<std::string, int64_t> added_;
  std::map<int64_t, std::string> added_names_;
};

}  // namespace tinv
