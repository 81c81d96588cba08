// Trains a byte-level BPE in CLIP's exact format (../shared/docs/FORMATS.md "CLIP BPE
// tokenizer"), so ClipTokenizer::load serves it like any Stable Diffusion tokenizer.
//
//   BpeModel bpe = train_bpe(captions, {/*num_merges=*/500});
//   save_bpe(bpe, "world/tokenizer");   // vocab.json, merges.txt, tokenizer_config.json,
//                                       // special_tokens_map.json
//   auto tok = ClipTokenizer::load("world/tokenizer");
//
// Training: each text is cleaned and pre-tokenised exactly as ClipTokenizer does
// (ClipTokenizer::clean_text, ClipTokenizer::pre_tokenize); each word becomes its byte symbols
// (bytes_to_unicode) with "</w>" on the last. Then, repeatedly, the adjacent pair with the highest
// count (weighted by word frequency) is merged everywhere, left to right without overlap, as the
// tokenizer applies merges. Ties go to the pair whose symbols are smallest as (first, second)
// byte strings; a pair whose concatenation is already a token is never chosen (so vocabulary
// strings stay unique). Training stops at num_merges or when no pair occurs min_pair_count times.
//
// Vocabulary: ids 0-255 the byte symbols in bytes_to_unicode order, 256-511 the same + "</w>",
// then one id per merge in merge order, then "<|startoftext|>", "<|endoftext|>".
// The output is a pure function of the texts and options: byte-identical across runs.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tinv::world {

struct BpeTrainOptions {
  int num_merges = 1000;          // at most this many merges
  int64_t min_pair_count = 2;     // stop when the best pair occurs fewer times
  int64_t model_max_length = 77;  // written to tokenizer_config.json
};

struct BpeModel {
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order, byte-level symbols
  std::vector<std::string> vocab;                           // id -> token string
  int64_t model_max_length = 77;
};

// Throws tinv::Error for num_merges < 0 or min_pair_count < 1.
BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options = {});

// File contents: vocab.json ({"!": 0, ...} as CLIP's, UTF-8, ids ascending) and merges.txt
// ("#version: 0.2" then "a b" per merge, newline-terminated).
std::string vocab_json(const BpeModel& bpe);
std::string merges_txt(const BpeModel& bpe);

// Creates `dir` if needed and writes the four tokenizer files, each atomically (temp + rename).
// Throws tinv::Error naming the file that could not be written.
void save_bpe(const BpeModel& bpe, const std::string& dir);

}  // namespace tinv::world
