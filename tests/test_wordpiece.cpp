// BERT WordPiece tokenizer on a small vocabulary written by the test.
#include <fstream>

#include "test_util.h"
#include "text/wordpiece_tokenizer.h"

namespace tinv {
namespace {

std::vector<std::string> small_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]",    "[SEP]",        "[MASK]", "a", "picture", "of", "the", "cat",
          "##s",   "un",    "##believ", "##able",       ".",      ",", "'",       "t",  "don", "cafe",
          "!",     "play",  "##ing",    "\xe4\xb8\xad", "naive"};
}

TEST(WordPiece, LoadsVocabFileAndEncodes) {
  test::TempDir dir;
  std::ofstream f(dir.file("vocab.txt"));
  for (const auto& t : small_vocab()) f << t << "\n";
  f.close();
  auto tok = WordPieceTokenizer::load(dir.file("vocab.txt"));
  EXPECT_EQ(tok.vocab_size(), 25);
  EXPECT_EQ(tok.encode("a picture of"), (std::vector<int64_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(tok.encode("a picture of", false), (std::vector<int64_t>{5, 6, 7}));
}

TEST(WordPiece, BasicTokenizationAndLongestMatch) {
  auto tok = WordPieceTokenizer::from_tokens(small_vocab(), "test");
  // Lowercasing, accent stripping, punctuation splitting, ## continuations, [UNK].
  EXPECT_EQ(tok.tokenize("The CATS, Unbelievable!"),
            (std::vector<std::string>{"the", "cat", "##s", ",", "un", "##believ", "##able", "!"}));
  EXPECT_EQ(tok.tokenize("Caf\xc3\xa9 na\xc3\xafve"), (std::vector<std::string>{"cafe", "naive"}));
  EXPECT_EQ(tok.tokenize("cafe\xcc\x81"), (std::vector<std::string>{"cafe"}));  // combining acute
  EXPECT_EQ(tok.tokenize("don't"), (std::vector<std::string>{"don", "'", "t"}));
  EXPECT_EQ(tok.tokenize("dog playing"), (std::vector<std::string>{"[UNK]", "play", "##ing"}));
  // Cleanup: control characters dropped, tabs/newlines are whitespace; CJK split per character.
  EXPECT_EQ(tok.tokenize("a\x01\tcat\n\xe4\xb8\xad\xe4\xb8\xad"),
            (std::vector<std::string>{"a", "cat", "\xe4\xb8\xad", "\xe4\xb8\xad"}));
  EXPECT_EQ(tok.tokenize(std::string(101, 'a')), (std::vector<std::string>{"[UNK]"}));
  // Special tokens written in the text stay whole.
  EXPECT_EQ(tok.tokenize("[CLS] a cat[SEP]"), (std::vector<std::string>{"[CLS]", "a", "cat", "[SEP]"}));
  EXPECT_TRUE(tok.tokenize("  \t ").empty());
}

TEST(WordPiece, DecodeJoinsPiecesAndCleansUp) {
  auto tok = WordPieceTokenizer::from_tokens(small_vocab(), "test");
  // [CLS] the cat ##s , un ##believ ##able . [SEP] [PAD]
  EXPECT_EQ(tok.decode({2, 8, 9, 10, 15, 11, 12, 13, 14, 3, 0}), "the cats, unbelievable.");
  EXPECT_EQ(tok.decode({2, 8, 3}, false), "[CLS] the [SEP]");
  EXPECT_EQ(tok.decode({9, 99999}), "cat");  // out of range: [UNK], skipped as special
}

TEST(WordPiece, AddedSpecialTokens) {
  auto tok = WordPieceTokenizer::from_tokens(small_vocab(), "test");
  EXPECT_EQ(tok.add_special_token("[DEC]", 30), 30);
  EXPECT_EQ(tok.token_to_id("[DEC]"), 30);
  EXPECT_EQ(tok.tokenize("[DEC]a"), (std::vector<std::string>{"[DEC]", "a"}));
  EXPECT_EQ(tok.decode({30, 5, 9}), "a cat");
  EXPECT_TINV_ERROR(tok.add_special_token("[ENC]", 3), "taken");
}

TEST(WordPiece, VocabWithoutSpecialTokensIsRefused) {
  EXPECT_TINV_ERROR(WordPieceTokenizer::from_tokens({"[PAD]", "[UNK]", "a"}, "v.txt"),
                    "v.txt: vocabulary lacks the special token [CLS]");
  test::TempDir dir;
  std::ofstream(dir.file("vocab.txt")) << "a\nb\n";
  EXPECT_TINV_ERROR(WordPieceTokenizer::load(dir.file("vocab.txt")), "lacks the special token [PAD]");
  EXPECT_TINV_ERROR(WordPieceTokenizer::load(dir.file("none.txt")), "none.txt");
}

}  // namespace
}  // namespace tinv
