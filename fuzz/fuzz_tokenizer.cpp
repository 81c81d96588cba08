// libFuzzer target: ClipTokenizer::encode/tokenize/decode on arbitrary bytes, with added tokens.
// Uses the fixture tokenizer (../shared/fixtures/tiny-sd15/model/tokenizer, or the folder in
// $TINV_FUZZ_TOKENIZER). Checked: no exception on any text, encode gives max_length ids starting
// with BOS with an EOS, decode accepts what encode gives and returns valid UTF-8. An input
// starting with 0x01 also tries its next bytes (up to the first 0x00) as a placeholder.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "text/clip_tokenizer.h"
#include "text/unicode.h"

namespace {

const tinv::ClipTokenizer& base_tokenizer() {
  static const tinv::ClipTokenizer tok = [] {
    const char* dir = std::getenv("TINV_FUZZ_TOKENIZER");
    auto t = tinv::ClipTokenizer::load(dir ? dir : TINV_SHARED_DIR "/fixtures/tiny-sd15/model/tokenizer");
    t.add_token("<x>");
    t.add_token("<cat-toy>");
    t.add_token("<x>y");
    t.add_token("\xCE\xA9mega-\xE6\x9D\xB1");  // non-ASCII placeholder
    return t;
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tinv::ClipTokenizer tok = base_tokenizer();
  std::string text(reinterpret_cast<const char*>(data), size);
  if (!text.empty() && text[0] == '\x01') {
    size_t end = text.find('\0', 1);
    std::string placeholder = text.substr(1, end == std::string::npos ? 16 : end - 1);
    try {
      tok.add_token(placeholder);
    } catch (const tinv::Error&) {  // collisions and empty placeholders are expected
    }
  }
  auto enc = tok.encode(text);
  if (static_cast<int64_t>(enc.ids.size()) != tok.max_length()) __builtin_trap();
  if (enc.ids.front() != tok.bos_id()) __builtin_trap();
  auto tokens = tok.tokenize(text);
  size_t n = std::min<size_t>(tokens.size(), tok.max_length() - 2);
  if (enc.ids[n + 1] != tok.eos_id() || enc.truncated != (tokens.size() > n)) __builtin_trap();
  for (int64_t id : tokens)
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  std::string back = tok.decode(enc.ids);
  if (tinv::unicode::sanitize_utf8(back) != back) __builtin_trap();
  return 0;
}
