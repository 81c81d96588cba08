#include "text/extra_tokens.h"

#include <torch/torch.h>

#include "common/error.h"
#include "text/clip_tokenizer.h"

namespace tinv {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int64_t ExtraTokens::add_token(ClipTokenizer& tokenizer, const std::string& token, const torch::Tensor& row) {
  TINV_CHECK(rows_2_.empty(), token, "SDXL tokens need rows for both text encoders");
  return add_base(tokenizer, token, row);
}

int64_t ExtraTokens::add_base(ClipTokenizer& tokenizer, const std::string& token, const torch::Tensor& row) {
  TINV_CHECK(row.dim() == 1, token, "embedding row must be 1-D, got ", row.dim(), "-D");
  if (!rows_.empty())
    TINV_CHECK(row.size(0) == rows_.front().size(0), token, "embedding is ", row.size(0), " wide but earlier ones are ",
               rows_.front().size(0));
  int64_t expected = tokenizer.base_vocab_size() + size();
  TINV_CHECK(tokenizer.vocab_size() == expected, token,
             "the tokenizer has added tokens that ExtraTokens does not know about");
  int64_t id = tokenizer.add_token(token);
  TINV_CHECK(id == expected, token, "unexpected token id ", id, " (expected ", expected, ")");
  rows_.push_back(row.detach().to(torch::kCPU, torch::kFloat32).contiguous());
  return id;
}

int64_t ExtraTokens::add_token(ClipTokenizer& tokenizer, ClipTokenizer& tokenizer_2, const std::string& token,
                               const torch::Tensor& row, const torch::Tensor& row_2) {
  TINV_CHECK(rows_.size() == rows_2_.size(), token, "SD1/SD2 and SDXL tokens cannot be mixed");
  TINV_CHECK(row_2.dim() == 1, token, "text_encoder_2 embedding row must be 1-D, got ", row_2.dim(), "-D");
  if (!rows_2_.empty())
    TINV_CHECK(row_2.size(0) == rows_2_.front().size(0), token, "text_encoder_2 embedding is ", row_2.size(0),
               " wide but earlier ones are ", rows_2_.front().size(0));
  TINV_CHECK(tokenizer_2.vocab_size() == tokenizer.vocab_size() &&
                 tokenizer_2.base_vocab_size() == tokenizer.base_vocab_size(),
             token, "tokenizer and tokenizer_2 disagree on their vocabularies");
  const int64_t id = add_base(tokenizer, token, row);
  tokenizer_2.add_token(token, id);
  rows_2_.push_back(row_2.detach().to(torch::kCPU, torch::kFloat32).contiguous());
  return id;
}

void ExtraTokens::add_trigger(ClipTokenizer& tokenizer, const std::string& trigger, const torch::Tensor& vectors) {
  add_trigger_impl(trigger, vectors, {},
                   [&](const std::string& tok, int64_t i) { add_token(tokenizer, tok, vectors[i]); });
}

void ExtraTokens::add_trigger(ClipTokenizer& tokenizer, ClipTokenizer& tokenizer_2, const std::string& trigger,
                              const torch::Tensor& vectors, const torch::Tensor& vectors_2) {
  TINV_CHECK(vectors_2.defined(), trigger, "an SDXL embedding needs rows for text_encoder_2 too");
  add_trigger_impl(trigger, vectors, vectors_2, [&](const std::string& tok, int64_t i) {
    add_token(tokenizer, tokenizer_2, tok, vectors[i], vectors_2[i]);
  });
}

void ExtraTokens::add_trigger_impl(const std::string& trigger, const torch::Tensor& vectors,
                                   const torch::Tensor& vectors_2,
                                   const std::function<void(const std::string&, int64_t)>& add) {
  TINV_CHECK(!trigger.empty(), "embedding", "empty trigger word");
  TINV_CHECK(vectors.dim() == 2 && vectors.size(0) >= 1, trigger, "embedding must be [n, D] with n >= 1");
  if (vectors_2.defined())
    TINV_CHECK(vectors_2.dim() == 2 && vectors_2.size(0) == vectors.size(0), trigger, "text_encoder_2 rows must be [",
               vectors.size(0), ", D2], got ", vectors_2.sizes());
  for (const auto& [t, toks] : triggers_) TINV_CHECK(lower(t) != lower(trigger), trigger, "trigger is already loaded");
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < vectors.size(0); ++i) {
    std::string tok = i == 0 ? trigger : trigger + "_" + std::to_string(i);
    add(tok, i);
    tokens.push_back(tok);
  }
  triggers_[trigger] = tokens;
}

std::string ExtraTokens::expand(const std::string& prompt) const {
  if (triggers_.empty()) return prompt;
  std::vector<std::pair<std::string, std::string>> order;  // lowered trigger -> replacement
  for (const auto& [t, toks] : triggers_) {
    std::string rep;
    for (const auto& k : toks) rep += (rep.empty() ? "" : " ") + k;
    order.emplace_back(lower(t), rep);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  std::string low = lower(prompt), out;
  for (size_t i = 0; i < prompt.size();) {
    bool matched = false;
    for (const auto& [t, rep] : order) {
      if (low.compare(i, t.size(), t) == 0) {
        out += rep;
        i += t.size();
        matched = true;
        break;
      }
    }
    if (!matched) out += prompt[i++];
  }
  return out;
}

torch::Tensor ExtraTokens::table() const {
  if (rows_.empty()) return {};
  return torch::stack(rows_);
}

torch::Tensor ExtraTokens::table_2() const {
  if (rows_2_.empty()) return {};
  return torch::stack(rows_2_);
}

}  // namespace tinv
