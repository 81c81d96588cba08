// Helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/error.h"

namespace tinv::test {

// ../shared/fixtures/<rel>
inline std::string fixture(const std::string& rel) {
  return std::string(TINV_SHARED_DIR) + "/fixtures/" + rel;
}

// A vocab.txt of 30522 lines with bert-base-uncased ids for the special tokens and the words
// of BLIP's prompt "a picture of", and "w<id>" elsewhere (the BLIP fixture ships no vocab).
inline void write_bert_test_vocab(const std::string& path) {
  std::ofstream v(path);
  for (int i = 0; i < 30522; ++i) {
    std::string t = "w" + std::to_string(i);
    if (i == 0) t = "[PAD]";
    if (i == 100) t = "[UNK]";
    if (i == 101) t = "[CLS]";
    if (i == 102) t = "[SEP]";
    if (i == 103) t = "[MASK]";
    if (i == 1037) t = "a";
    if (i == 3861) t = "picture";
    if (i == 1997) t = "of";
    v << t << "\n";
  }
}

// A fresh temporary folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tinv-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tinv::test

// Expects `stmt` to throw tinv::Error whose message contains `substr`.
#define EXPECT_TINV_ERROR(stmt, substr)                                                  \
  do {                                                                                   \
    try {                                                                                \
      stmt;                                                                              \
      ADD_FAILURE() << "expected tinv::Error containing '" << (substr) << "'";           \
    } catch (const ::tinv::Error& e) {                                                   \
      EXPECT_NE(std::string(e.what()).find(substr), std::string::npos)                  \
          << "message was: " << e.what();                                                \
    }                                                                                    \
  } while (0)
