// ExtraTokens: triggers expanding to n placeholder tokens with their rows.
#include <torch/torch.h>

#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/extra_tokens.h"

namespace tinv {
namespace {

TEST(ExtraTokens, TriggerExpandsToItsVectors) {
  auto tok = ClipTokenizer::load(test::fixture("tiny-sd15/model/tokenizer"));
  ExtraTokens extra;
  auto v = torch::randn({3, 32});
  extra.add_trigger(tok, "<cat-toy>", v);
  extra.add_trigger(tok, "<x>", torch::randn({1, 32}));
  EXPECT_EQ(extra.size(), 4);
  EXPECT_EQ(extra.expand("a photo of <cat-toy>, <X>!"), "a photo of <cat-toy> <cat-toy>_1 <cat-toy>_2, <x>!");
  auto ids = tok.encode(extra.expand("<cat-toy>")).ids;
  int64_t base = tok.base_vocab_size();
  EXPECT_EQ(ids[1], base);
  EXPECT_EQ(ids[2], base + 1);
  EXPECT_EQ(ids[3], base + 2);
  EXPECT_EQ(ids[4], tok.eos_id());
  EXPECT_TRUE(torch::equal(extra.table().slice(0, 0, 3), v));
}

TEST(ExtraTokens, RefusesCollisionsAndWidthMismatch) {
  auto tok = ClipTokenizer::load(test::fixture("tiny-sd15/model/tokenizer"));
  ExtraTokens extra;
  extra.add_trigger(tok, "<a>", torch::randn({1, 32}));
  EXPECT_TINV_ERROR(extra.add_trigger(tok, "<A>", torch::randn({1, 32})), "already loaded");
  EXPECT_TINV_ERROR(extra.add_trigger(tok, "<b>", torch::randn({1, 16})), "16 wide");
  EXPECT_TINV_ERROR(extra.add_trigger(tok, "<c>", torch::randn({0, 32})), "[n, D]");
  EXPECT_THROW(extra.add_trigger(tok, "cat", torch::randn({1, 32})), Error);
}

}  // namespace
}  // namespace tinv
