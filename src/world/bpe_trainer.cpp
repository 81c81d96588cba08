// Byte-level BPE training in CLIP's format (see bpe_trainer.h for the algorithm and tie rule).
#include "world/bpe_trainer.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/error.h"
#include "common/fs.h"
#include "text/clip_tokenizer.h"

namespace tinv::world {
namespace {

const std::string kEndOfWord = "</w>";

struct Word {
  std::vector<int> symbols;  // vocabulary ids
  int64_t count = 0;
};

uint64_t pair_key(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

// Replaces every non-overlapping (a, b), left to right, by `merged` (as ClipTokenizer's bpe_word).
void apply_merge(std::vector<int>& s, int a, int b, int merged) {
  size_t out = 0;
  for (size_t i = 0; i < s.size();) {
    if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
      s[out++] = merged;
      i += 2;
    } else {
      s[out++] = s[i++];
    }
  }
  s.resize(out);
}

}  // namespace

BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  TINV_CHECK(opt.num_merges >= 0, "train_bpe", "num_merges must be >= 0, got ", opt.num_merges);
  TINV_CHECK(opt.min_pair_count >= 1, "train_bpe", "min_pair_count must be >= 1, got ", opt.min_pair_count);
  BpeModel bpe;
  bpe.model_max_length = opt.model_max_length;
  // Base vocabulary: byte symbols, then the same with </w>.
  const std::vector<uint8_t> order = ClipTokenizer::byte_vocab_order();
  for (uint8_t b : order) bpe.vocab.push_back(ClipTokenizer::byte_symbol(b));
  for (uint8_t b : order) bpe.vocab.push_back(ClipTokenizer::byte_symbol(b) + kEndOfWord);
  std::unordered_map<std::string, int> ids;
  for (size_t i = 0; i < bpe.vocab.size(); ++i) ids.emplace(bpe.vocab[i], static_cast<int>(i));

  // Word frequencies (sorted map: the word order never depends on hashing).
  std::map<std::string, int64_t> freq;
  for (const std::string& t : texts)
    for (std::string& w : ClipTokenizer::pre_tokenize(ClipTokenizer::clean_text(t))) ++freq[w];
  std::vector<Word> words;
  for (const auto& [w, n] : freq) {
    Word word;
    word.count = n;
    for (size_t i = 0; i < w.size(); ++i) {
      std::string sym = ClipTokenizer::byte_symbol(static_cast<uint8_t>(w[i]));
      if (i + 1 == w.size()) sym += kEndOfWord;
      word.symbols.push_back(ids.at(sym));
    }
    words.push_back(std::move(word));
  }

  while (static_cast<int>(bpe.merges.size()) < opt.num_merges) {
    std::unordered_map<uint64_t, int64_t> counts;
    for (const Word& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) counts[pair_key(w.symbols[i], w.symbols[i + 1])] += w.count;
    int best_a = -1, best_b = -1;
    int64_t best_count = 0;
    for (const auto& [key, count] : counts) {
      int a = static_cast<int>(key >> 32), b = static_cast<int>(key & 0xFFFFFFFFu);
      if (count < opt.min_pair_count || count < best_count) continue;
      if (count == best_count) {  // tie: smallest (first, second) symbol strings
        const std::string &x = bpe.vocab[a], &y = bpe.vocab[b];
        const std::string &bx = bpe.vocab[best_a], &by = bpe.vocab[best_b];
        if (x > bx || (x == bx && y >= by)) continue;
      }
      if (ids.count(bpe.vocab[a] + bpe.vocab[b])) continue;  // already a token
      best_a = a, best_b = b, best_count = count;
    }
    if (best_a < 0) break;
    const int merged = static_cast<int>(bpe.vocab.size());
    bpe.merges.emplace_back(bpe.vocab[best_a], bpe.vocab[best_b]);
    bpe.vocab.push_back(bpe.vocab[best_a] + bpe.vocab[best_b]);
    ids.emplace(bpe.vocab.back(), merged);
    for (Word& w : words) apply_merge(w.symbols, best_a, best_b, merged);
  }
  bpe.vocab.push_back(ClipTokenizer::kBosToken);
  bpe.vocab.push_back(ClipTokenizer::kEosToken);
  return bpe;
}

std::string vocab_json(const BpeModel& bpe) {
  std::string out = "{";
  for (size_t i = 0; i < bpe.vocab.size(); ++i) {
    if (i > 0) out += ", ";
    out += nlohmann::json(bpe.vocab[i]).dump() + ": " + std::to_string(i);
  }
  return out + "}";
}

std::string merges_txt(const BpeModel& bpe) {
  std::string out = "#version: 0.2\n";
  for (const auto& [a, b] : bpe.merges) out += a + " " + b + "\n";
  return out;
}

void save_bpe(const BpeModel& bpe, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TINV_CHECK(!ec && dir_exists(dir), dir, "cannot create folder: ", ec.message());
  nlohmann::ordered_json special = {{"bos_token", ClipTokenizer::kBosToken},
                                    {"eos_token", ClipTokenizer::kEosToken},
                                    {"unk_token", ClipTokenizer::kEosToken},
                                    {"pad_token", ClipTokenizer::kEosToken}};
  nlohmann::ordered_json config = special;
  config["model_max_length"] = bpe.model_max_length;
  config["do_lower_case"] = true;
  config["tokenizer_class"] = "CLIPTokenizer";
  auto write = [&](const char* name, const std::string& text) {
    write_file_atomically(join_path(dir, name), text.data(), text.size());
  };
  write("tokenizer_config.json", config.dump(2) + "\n");
  write("special_tokens_map.json", special.dump(2) + "\n");
  write("merges.txt", merges_txt(bpe));
  write("vocab.json", vocab_json(bpe));
}

}  // namespace tinv::world
