#include "io/json_config.h"

#include "common/fs.h"

namespace tinv {

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source, std::string("invalid JSON: ") + e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) {
  TINV_CHECK(file_exists(path), path, "missing file");
  return parse_json(read_text_file(path), path);
}

JsonConfig JsonConfig::parse(const std::string& text, const std::string& source) {
  nlohmann::json j = parse_json(text, source);
  TINV_CHECK(j.is_object(), source, "expected a JSON object");
  return JsonConfig(std::move(j), source);
}

JsonConfig JsonConfig::load(const std::string& path) { return parse(read_text_file(path), path); }

JsonConfig JsonConfig::sub(const std::string& key) const {
  TINV_CHECK(has(key) && j_[key].is_object(), source_, "missing object '", key, "'");
  return JsonConfig(j_[key], source_ + ": " + key);
}

}  // namespace tinv
