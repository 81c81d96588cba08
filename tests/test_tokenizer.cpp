// CLIP BPE tokenizer: fixture vocabulary behaviour, cleanup, pre-tokenisation, added tokens,
// decoding, malformed files and invalid UTF-8; tiny hand-written vocabularies for BPE order.
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/unicode.h"

namespace tinv {
namespace {

using Ids = std::vector<int64_t>;

const ClipTokenizer& fixture_tok() {
  static const ClipTokenizer tok = ClipTokenizer::load(test::fixture("tiny-sd15/model/tokenizer"));
  return tok;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A tiny CLIP-format vocabulary over the letters a, b, c (no byte table: other bytes are unk).
struct TinyVocab {
  test::TempDir dir;
  std::string vocab = dir.file("vocab.json"), merges = dir.file("merges.txt");
  explicit TinyVocab(const std::string& merge_lines,
                     const std::string& vocab_json =
                         R"({"a":0,"b":1,"c":2,"a</w>":3,"b</w>":4,"c</w>":5,"bc</w>":6,"ab":7,)"
                         R"("abc</w>":8,"<|startoftext|>":9,"<|endoftext|>":10,"!":11})") {
    write(vocab, vocab_json);
    write(merges, "#version: 0.2\n" + merge_lines);
  }
};

TEST(ClipTokenizer, FixtureVocabularyAndSpecialIds) {
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.base_vocab_size(), 49408);
  EXPECT_EQ(tok.vocab_size(), 49408);
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 49407);
  EXPECT_EQ(tok.max_length(), 77);
  EXPECT_EQ(tok.tokenize("a photo of a cat"), (Ids{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(tok.token_string(2368), "cat</w>");
  auto enc = tok.encode("a photo of a cat");
  ASSERT_EQ(enc.ids.size(), 77u);
  EXPECT_FALSE(enc.truncated);
  EXPECT_EQ(Ids(enc.ids.begin(), enc.ids.begin() + 8), (Ids{49406, 320, 1125, 539, 320, 2368, 49407, 49407}));
  EXPECT_EQ(enc.ids.back(), 49407);
}

TEST(ClipTokenizer, CleanupUnescapesCollapsesAndLowercases) {
  EXPECT_EQ(ClipTokenizer::clean_text("  A&amp;amp;B\t\n C  "), "a&b c");
  EXPECT_EQ(ClipTokenizer::clean_text("&lt;x&gt; &#65;&#x42; &eacute;&nbsp;&copy"), "<x> ab é ©");
  EXPECT_EQ(ClipTokenizer::clean_text("&notit; &ampx &bogus; &#xD800; &#99999999999;"),
            "¬it; &x &bogus; \uFFFD \uFFFD");
  EXPECT_EQ(ClipTokenizer::clean_text("don\u2019t \u201cquoted\u201d"), "don't \"quoted\"");
  EXPECT_EQ(ClipTokenizer::clean_text("\uFF21\uFF22\uFF23\u3000\uFB01ne"), "abc fine");
  EXPECT_EQ(ClipTokenizer::clean_text("a\x01\x1b[31mred\x7f"), "ared");
  EXPECT_EQ(ClipTokenizer::clean_text("\xC3\x80\xC3\x89 \xCE\xA3\xCE\x9F\xCE\xA6\xCE\x99\xCE\x91 "
                                      "\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3 \xD0\x9C\xD0\x9E\xD0\xA1 "
                                      "\xC4\xB0"),
            "\xC3\xA0\xC3\xA9 σοφια οδος мос i\xCC\x87");
  EXPECT_EQ(ClipTokenizer::clean_text(" \t\n "), "");
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("A  PHOTO\nof a   CAT"), tok.tokenize("a photo of a cat"));
  EXPECT_EQ(tok.tokenize("don\u2019t"), tok.tokenize("don't"));
}

TEST(ClipTokenizer, PunctuationRunsAndNumbersOneDigitEach) {
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("!!"), (Ids{748}));  // one punctuation run, one token
  EXPECT_EQ(tok.tokenize("cat,dog"), concat({tok.tokenize("cat"), tok.tokenize(","), tok.tokenize("dog")}));
  EXPECT_EQ(tok.tokenize("12345"), (Ids{272, 273, 274, 275, 276}));
  EXPECT_EQ(tok.tokenize("3.14"), concat({tok.tokenize("3"), tok.tokenize("."), tok.tokenize("1"), tok.tokenize("4")}));
  EXPECT_EQ(tok.tokenize("abc123"),
            concat({tok.tokenize("abc"), tok.tokenize("1"), tok.tokenize("2"), tok.tokenize("3")}));
  // Superscript two and Arabic-Indic three are numbers too: one token group each.
  EXPECT_EQ(tok.tokenize("x\u00B2\u0663"), concat({tok.tokenize("x"), tok.tokenize("\u00B2"), tok.tokenize("\u0663")}));
}

TEST(ClipTokenizer, Contractions) {
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("it's"), concat({tok.tokenize("it"), tok.tokenize("'s")}));
  EXPECT_EQ(tok.tokenize("we'll"), concat({tok.tokenize("we"), tok.tokenize("'ll")}));
  EXPECT_EQ(tok.tokenize("'sx"), concat({tok.tokenize("'s"), tok.tokenize("x")}));
  // A punctuation run is greedy: "''s" is "''" then "s", not "'" + "'s".
  EXPECT_EQ(tok.tokenize("''s"), concat({tok.tokenize("''"), tok.tokenize("s")}));
  EXPECT_EQ(tok.tokenize("IT'S"), tok.tokenize("it's"));
}

TEST(ClipTokenizer, NonAsciiLettersStayInOneWord) {
  using unicode::is_letter;
  using unicode::is_number;
  for (char32_t c : {U'é', U'ж', U'中', U'ا', U'ß', U'ω', U'ㄱ', U'ア', U'ก', U'क'})
    EXPECT_TRUE(is_letter(c)) << uint32_t(c);
  for (char32_t c : {U'!', U'5', U' ', char32_t(0x301), char32_t(0x93F), U'😀', U'€'})
    EXPECT_FALSE(is_letter(c)) << uint32_t(c);
  for (char32_t c : {U'5', U'²', U'½', U'٣', U'४', U'Ⅻ', U'０'}) EXPECT_TRUE(is_number(c)) << uint32_t(c);
  EXPECT_FALSE(is_number(U'a'));
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("CAFÉ"), tok.tokenize("café"));
  // "naïve" is one letter run: its ids differ from "na" + "ï" + "ve" word by word.
  EXPECT_NE(tok.tokenize("naïve"), concat({tok.tokenize("na"), tok.tokenize("ï"), tok.tokenize("ve")}));
  EXPECT_EQ(tok.decode(tok.tokenize("naïve résumé москва 東京")), "naïve résumé москва 東京");
}

TEST(ClipTokenizer, EmptyText) {
  const auto& tok = fixture_tok();
  EXPECT_TRUE(tok.tokenize("").empty());
  EXPECT_TRUE(tok.tokenize(" \n\t ").empty());
  auto enc = tok.encode("");
  EXPECT_FALSE(enc.truncated);
  EXPECT_EQ(enc.ids[0], 49406);
  for (size_t i = 1; i < enc.ids.size(); ++i) EXPECT_EQ(enc.ids[i], 49407);
}

TEST(ClipTokenizer, TruncationKeepsEos) {
  const auto& tok = fixture_tok();
  std::string s75, s76;
  for (int i = 0; i < 75; ++i) s75 += "word ";
  s76 = s75 + "cat";
  auto e75 = tok.encode(s75);
  EXPECT_FALSE(e75.truncated);
  EXPECT_EQ(e75.ids[75], 2653);
  EXPECT_EQ(e75.ids[76], 49407);
  auto e76 = tok.encode(s76);
  EXPECT_TRUE(e76.truncated);
  ASSERT_EQ(e76.ids.size(), 77u);
  EXPECT_EQ(e76.ids[0], 49406);
  EXPECT_EQ(e76.ids[75], 2653);
  EXPECT_EQ(e76.ids[76], 49407);
  EXPECT_EQ(tok.tokenize(s76).size(), 76u);  // tokenize never truncates
}

TEST(ClipTokenizer, AddedTokensSplitOutAnywhere) {
  ClipTokenizer tok = fixture_tok();
  EXPECT_EQ(tok.add_token("<x>"), 49408);
  EXPECT_EQ(tok.add_token("<x>y"), 49409);
  EXPECT_EQ(tok.add_token("<Cat-Toy>"), 49410);
  EXPECT_EQ(tok.vocab_size(), 49411);
  EXPECT_EQ(tok.added_token_id("<x>"), 49408);
  EXPECT_EQ(tok.added_token_id("<z>"), -1);
  const Ids cat = tok.tokenize("cat"), comma = tok.tokenize(",");
  EXPECT_EQ(tok.tokenize("<x>,"), concat({{49408}, comma}));
  EXPECT_EQ(tok.tokenize("cat<x>cat"), concat({cat, {49408}, cat}));
  EXPECT_EQ(tok.tokenize("<x><x>y<x>"), (Ids{49408, 49409, 49408}));  // longest match first
  EXPECT_EQ(tok.tokenize("a <cat-toy> and <CAT-TOY>"),
            concat({tok.tokenize("a"), {49410}, tok.tokenize("and"), {49410}}));
  EXPECT_EQ(tok.decode(tok.encode("a photo of <Cat-Toy>, <x>").ids), "a photo of <Cat-Toy> , <x>");
  EXPECT_EQ(tok.token_string(49409), "<x>y");
  // Copies are independent: the fixture tokenizer has no added tokens.
  EXPECT_EQ(fixture_tok().vocab_size(), 49408);
  EXPECT_NE(fixture_tok().tokenize("<x>"), (Ids{49408}));
}

TEST(ClipTokenizer, AddedTokenExplicitIdsAndCollisions) {
  ClipTokenizer tok = fixture_tok();
  tok.add_token("<b>", 49409);
  tok.add_token("<a>", 49408);
  EXPECT_EQ(tok.add_token("<c>"), 49410);
  EXPECT_TRUE(tok.is_vocab_word("cat"));
  EXPECT_TRUE(tok.is_vocab_word("cat</w>"));
  EXPECT_TRUE(tok.is_vocab_word("CAT"));
  EXPECT_FALSE(tok.is_vocab_word("<a>"));
  EXPECT_TRUE(tok.is_vocab_word("sks"));  // a real CLIP token, a poor placeholder
  EXPECT_FALSE(tok.is_vocab_word("qzxvk"));
  EXPECT_TINV_ERROR(tok.add_token("cat"), "'cat'");
  EXPECT_TINV_ERROR(tok.add_token("cat</w>"), "collides with the vocabulary");
  EXPECT_TINV_ERROR(tok.add_token("!"), "collides");
  EXPECT_TINV_ERROR(tok.add_token("<|endoftext|>"), "collides");
  EXPECT_TINV_ERROR(tok.add_token("<A>"), "already added");
  EXPECT_TINV_ERROR(tok.add_token("  "), "empty");
  EXPECT_TINV_ERROR(tok.add_token("<d>", 100), "base vocabulary size");
  EXPECT_TINV_ERROR(tok.add_token("<d>", 49409), "already used by added token '<b>'");
  EXPECT_EQ(tok.vocab_size(), 49411);
}

TEST(ClipTokenizer, DecodeRoundTripAndErrors) {
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.decode(tok.encode("A Photo of a CAT, café 😀 !").ids), "a photo of a cat , café 😀 !");
  EXPECT_EQ(tok.decode(tok.tokenize("😀!")), "😀!");  // one punctuation run, one word
  EXPECT_EQ(tok.decode({}), "");
  EXPECT_EQ(tok.decode({49406, 49407, 49407}), "");
  EXPECT_TINV_ERROR(tok.decode({49408}), "unknown token id 49408");
  EXPECT_TINV_ERROR(tok.token_string(-1), "unknown token id -1");
  // Half of a multi-byte character decodes to U+FFFD instead of invalid UTF-8.
  Ids emoji = tok.tokenize("😀😀😀x");
  ASSERT_GE(emoji.size(), 2u);
  std::string half = tok.decode({emoji[0]});
  EXPECT_EQ(unicode::sanitize_utf8(half), half);
}

TEST(ClipTokenizer, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(unicode::decode_utf8("a\xff\xfe"
                                 "b"),
            (std::u32string{U'a', 0xFFFD, 0xFFFD, U'b'}));
  EXPECT_EQ(unicode::decode_utf8("\xe2\x82"), (std::u32string{0xFFFD}));          // truncated: one
  EXPECT_EQ(unicode::decode_utf8("\xc0\x80"), (std::u32string{0xFFFD, 0xFFFD}));  // overlong
  EXPECT_EQ(unicode::decode_utf8("\xed\xa0\x80"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));
  EXPECT_EQ(unicode::decode_utf8("\xf0\x9f\x98\x80"), (std::u32string{0x1F600}));
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("a\xff\xfe"
                         "b"),
            tok.tokenize("a\uFFFD\uFFFD"
                         "b"));
  EXPECT_EQ(tok.tokenize(std::string("x\0y", 3)), tok.tokenize("xy"));  // NUL is removed
  auto enc = tok.encode("\x80\xbf\xf5\xff cat \xe2\x82");
  EXPECT_EQ(enc.ids.size(), 77u);
}

TEST(ClipTokenizer, Sd2StylePadAndMaxLengthFromConfig) {
  test::TempDir dir;
  std::string src = test::fixture("tiny-sd15/model/tokenizer");
  ASSERT_EQ(::symlink((src + "/vocab.json").c_str(), dir.file("vocab.json").c_str()), 0);
  ASSERT_EQ(::symlink((src + "/merges.txt").c_str(), dir.file("merges.txt").c_str()), 0);
  write(dir.file("tokenizer_config.json"), R"({"model_max_length": 8, "pad_token": "<|endoftext|>"})");
  write(dir.file("special_tokens_map.json"), R"({"pad_token": {"content": "!", "lstrip": false}})");
  auto tok = ClipTokenizer::load(dir.path());
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.max_length(), 8);
  EXPECT_EQ(tok.encode("a cat").ids, (Ids{49406, 320, 2368, 49407, 0, 0, 0, 0}));
  EXPECT_EQ(tok.decode(tok.encode("a cat!").ids), "a cat !");
  auto long_enc = tok.encode("a a a a a a a");
  EXPECT_TRUE(long_enc.truncated);
  EXPECT_EQ(long_enc.ids, (Ids{49406, 320, 320, 320, 320, 320, 320, 49407}));
  write(dir.file("tokenizer_config.json"), R"({"model_max_length": 1e30})");
  EXPECT_TINV_ERROR(ClipTokenizer::load(dir.path()), "model_max_length");
  write(dir.file("tokenizer_config.json"), R"({"model_max_length": 77)");
  EXPECT_TINV_ERROR(ClipTokenizer::load(dir.path()), "tokenizer_config.json: invalid JSON");
}

TEST(ClipTokenizer, BpeMergesLowestRankFirst) {
  {
    TinyVocab v("b c</w>\na b\n");  // "bc</w>" first, then "ab" can no longer form
    auto tok = ClipTokenizer::from_files(v.vocab, v.merges);
    EXPECT_EQ(tok.tokenize("abc"), (Ids{0, 6}));
    EXPECT_EQ(tok.base_vocab_size(), 12);
  }
  {
    TinyVocab v("a b\nb c</w>\nab c</w>\n");  // "ab" first, then "abc</w>"
    auto tok = ClipTokenizer::from_files(v.vocab, v.merges);
    EXPECT_EQ(tok.tokenize("abc"), (Ids{8}));
    EXPECT_EQ(tok.tokenize("ABC cab"), (Ids{8, 2, 0, 4}));  // "a b</w>" is no merge
    // Symbols missing from the vocabulary map to unk (= <|endoftext|>).
    EXPECT_EQ(tok.tokenize("d"), (Ids{10}));
    EXPECT_EQ(tok.encode("abc").ids.size(), 77u);
    EXPECT_EQ(tok.add_token("<t>"), 12);
  }
  {
    TinyVocab v("a b\r\nb c</w>\r\n\r\n");  // CRLF and trailing blank lines are fine
    EXPECT_EQ(ClipTokenizer::from_files(v.vocab, v.merges, "!", 5).encode("abc").ids, (Ids{9, 7, 5, 10, 11}));
  }
}

TEST(ClipTokenizer, MalformedFilesNameTheFile) {
  {
    TinyVocab v("a b\n");
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.dir.file("none.json"), v.merges), "none.json: missing file");
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.dir.file("none.txt")), "none.txt: missing file");
    EXPECT_TINV_ERROR(ClipTokenizer::load(v.dir.file("nodir")), "vocab.json: missing file");
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.merges, "<pad>"), "no pad token '<pad>'");
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.merges, "!", 1), "max_length must be >= 2");
  }
  auto vocab_error = [](const std::string& json, const std::string& msg) {
    TinyVocab v("a b\n", json);
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.merges), msg);
  };
  vocab_error(R"({"a": 0,)", "vocab.json: invalid JSON");
  vocab_error(R"(["a", "b"])", "vocab.json: expected a JSON object");
  vocab_error(R"({})", "vocabulary is empty");
  vocab_error(R"({"a": "0"})", "token 'a' must map to an integer id");
  vocab_error(R"({"a": -1})", "token 'a' must map to an integer id");
  vocab_error(R"({"a": 1.5})", "token 'a' must map to an integer id");
  vocab_error(R"({"a": 99999999999})", "token 'a' must map to an integer id");
  vocab_error(R"({"a": 0, "b": 0})", "id 0 is used by both");
  vocab_error(R"({"a": 0, "<|endoftext|>": 1, "!": 2})", "no bos token '<|startoftext|>'");
  vocab_error(R"({"a": 0, "<|startoftext|>": 1, "!": 2})", "no eos token '<|endoftext|>'");
  for (const std::string& bad : {"a b c\n", "ab\n", " a\n", "a \n", "a  b\n"}) {
    TinyVocab v("a b\n" + bad);
    EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.merges), "merges.txt: line 3");
  }
  TinyVocab v("");
  write(v.merges, "");
  EXPECT_TINV_ERROR(ClipTokenizer::from_files(v.vocab, v.merges), "empty merges file");
}

TEST(ClipTokenizer, SpecialTokensInText) {
  const auto& tok = fixture_tok();
  EXPECT_EQ(tok.tokenize("a <|endoftext|> b"), (Ids{320, 49407, 321}));
  EXPECT_EQ(tok.tokenize("<|STARTOFTEXT|>"), (Ids{49406}));
  // Inside a punctuation run the special token is not recognised (as the reference regex).
  EXPECT_NE(tok.tokenize("!<|endoftext|>"), concat({tok.tokenize("!"), {49407}}));
}

}  // namespace
}  // namespace tinv
