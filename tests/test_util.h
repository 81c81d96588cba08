// Helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"

namespace tinv::test {

// ../shared/fixtures/<rel>
inline std::string fixture(const std::string& rel) { return std::string(TINV_SHARED_DIR) + "/fixtures/" + rel; }

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

// `s` single-quoted for sh (an embedded ' becomes '\'').
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

#ifdef TINV_BINARY  // tests registered with tinv_test_cli()
// What a run of the tinv binary gave.
struct CliResult {
  int status = -1;                     // exit status; -1 when it did not exit (a signal)
  std::string out, err;                // stdout, stderr
  std::vector<std::string> err_lines;  // stderr, line by line
};

// Runs `env tinv args` through sh (quote paths in `args` with quote()); stdout and stderr go
// through files in `dir`.
inline CliResult run_tinv(const std::string& args, const TempDir& dir, const std::string& env = "") {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string cmd = env + " " + quote(TINV_BINARY) + " " + args + " >" + quote(out) + " 2>" + quote(err);
  const int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream o(out, std::ios::binary), e(err, std::ios::binary);
  r.out.assign(std::istreambuf_iterator<char>(o), {});
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);) r.err_lines.push_back(line);
  return r;
}
#endif

}  // namespace tinv::test

// Expects `stmt` to throw tinv::Error whose message contains `substr`.
#define EXPECT_TINV_ERROR(stmt, substr)                                                                \
  do {                                                                                                 \
    try {                                                                                              \
      stmt;                                                                                            \
      ADD_FAILURE() << "expected tinv::Error containing '" << (substr) << "'";                         \
    } catch (const ::tinv::Error& e) {                                                                 \
      EXPECT_NE(std::string(e.what()).find(substr), std::string::npos) << "message was: " << e.what(); \
    }                                                                                                  \
  } while (0)

// Expects `stmt` to throw tinv::Error whose message is exactly `message` (one line).
#define EXPECT_TINV_ERROR_IS(stmt, message)                          \
  do {                                                               \
    try {                                                            \
      stmt;                                                          \
      ADD_FAILURE() << "expected tinv::Error '" << (message) << "'"; \
    } catch (const ::tinv::Error& e) {                               \
      EXPECT_EQ(std::string(e.what()), std::string(message));        \
    }                                                                \
  } while (0)
