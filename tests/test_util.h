// Helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/error.h"

namespace tinv::test {

// ../shared/fixtures/<rel>
inline std::string fixture(const std::string& rel) {
  return std::string(TINV_SHARED_DIR) + "/fixtures/" + rel;
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
