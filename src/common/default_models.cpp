#include "common/default_models.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "common/error.h"
#include "common/fs.h"

#ifndef TINV_SOURCE_MODELS_DIR
#define TINV_SOURCE_MODELS_DIR ""
#endif

namespace tinv {

std::string executable_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> default_model_candidates(const std::string& name) {
  TINV_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..", "default model",
             "invalid name '", name, "'");
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  if (const char* env = std::getenv("TINV_MODELS_DIR"); env && *env) out.push_back(join_path(env, name));
  if (const std::string exe = executable_path(); !exe.empty())
    out.push_back((fs::path(exe).parent_path() / ".." / "models" / name).lexically_normal().string());
  if (const std::string src = TINV_SOURCE_MODELS_DIR; !src.empty()) {
    const std::string p = join_path(src, name);
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return out;
}

std::string default_model_dir(const std::string& name) {
  const auto candidates = default_model_candidates(name);
  for (const auto& c : candidates)
    if (dir_exists(c)) return c;
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + c;
  const std::string instead = name == "world-sd"     ? ", or pass --model"
                              : name == "world-blip" ? ", or pass --captioner"
                              : name == "concepts"   ? ", or pass --image"
                                                     : "";
  throw Error("models/" + name, str_cat("bundled model not found (looked in ", tried.empty() ? "no folder" : tried,
                                        "); set TINV_MODELS_DIR to the folder holding '", name, "'", instead));
}

}  // namespace tinv
