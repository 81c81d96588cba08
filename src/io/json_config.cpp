#include "io/json_config.h"

#include "common/fs.h"

namespace tinv {

JsonConfig JsonConfig::parse(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source, std::string("invalid JSON: ") + e.what());
  }
  TINV_CHECK(j.is_object(), source, "expected a JSON object");
  return JsonConfig(std::move(j), source);
}

JsonConfig JsonConfig::load(const std::string& path) { return parse(read_text_file(path), path); }

JsonConfig JsonConfig::sub(const std::string& key) const {
  TINV_CHECK(has(key) && j_[key].is_object(), source_, "missing object '", key, "'");
  return JsonConfig(j_[key], source_ + ": " + key);
}

}  // namespace tinv
