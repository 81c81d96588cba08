// Learned embeddings taking part in a prompt: trigger words added to the tokenizer, each
// expanding to n placeholder tokens whose rows feed ClipTextModel::forward(ids, extra).
//
//   tinv::ExtraTokens extra;
//   extra.add_trigger(tokenizer, "<cat-toy>", vectors);       // vectors [3, 768]
//   auto ids = tokenizer.encode(extra.expand("a photo of <cat-toy>")).ids;
//   auto h = text_encoder->forward(ids_tensor, extra.table()); // rows for the added ids
//
// A trigger of n vectors is added as the tokens `trigger`, `trigger_1`, ..., `trigger_{n-1}`
// (the diffusers convention) and every occurrence of the trigger in a prompt becomes those n
// tokens. Token ids are allocated in order from the tokenizer's base vocabulary size, so row i
// of table() is the embedding of id base_vocab_size + i.
//
// SDXL: the overloads taking two tokenizers add the same tokens to both (same ids) and keep a
// second row set for text_encoder_2 (table_2()); an object holds either kind, not both.
#pragma once
#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tinv {

class ClipTokenizer;

class ExtraTokens {
 public:
  // Adds the trigger's tokens to `tokenizer` (which must have no other added tokens than those
  // added through this object). vectors [n, D]. Throws tinv::Error if the trigger or one of its
  // tokens collides with the vocabulary or an existing trigger, or D differs from earlier rows.
  void add_trigger(ClipTokenizer& tokenizer, const std::string& trigger, const torch::Tensor& vectors);
  // Adds one placeholder token with its starting row ([D]); returns its id. Used by training,
  // where every placeholder is its own trigger.
  int64_t add_token(ClipTokenizer& tokenizer, const std::string& token, const torch::Tensor& row);
  // SDXL: vectors [n, h1] for text_encoder, vectors_2 [n, h2] for text_encoder_2.
  void add_trigger(ClipTokenizer& tokenizer, ClipTokenizer& tokenizer_2, const std::string& trigger,
                   const torch::Tensor& vectors, const torch::Tensor& vectors_2);
  int64_t add_token(ClipTokenizer& tokenizer, ClipTokenizer& tokenizer_2, const std::string& token,
                    const torch::Tensor& row, const torch::Tensor& row_2);

  // Replaces each trigger in `prompt` by its tokens separated by spaces (one pass, longest
  // trigger first; case-insensitive like the tokenizer).
  std::string expand(const std::string& prompt) const;
  // [n_total, D] rows in id order, or an undefined tensor when nothing was added.
  torch::Tensor table() const;
  // SDXL: [n_total, h2] rows for text_encoder_2, or undefined.
  torch::Tensor table_2() const;
  bool is_xl() const { return !rows_2_.empty(); }
  bool empty() const { return rows_.empty(); }
  int64_t size() const { return static_cast<int64_t>(rows_.size()); }
  const std::map<std::string, std::vector<std::string>>& triggers() const { return triggers_; }

 private:
  int64_t add_base(ClipTokenizer& tokenizer, const std::string& token, const torch::Tensor& row);
  void add_trigger_impl(const std::string& trigger, const torch::Tensor& vectors, const torch::Tensor& vectors_2,
                        const std::function<void(const std::string&, int64_t)>& add);

  std::vector<torch::Tensor> rows_, rows_2_;
  std::map<std::string, std::vector<std::string>> triggers_;
};

}  // namespace tinv
