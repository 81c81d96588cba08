// Reading diffusers/transformers config.json files with errors that name file and field.
//
//   tinv::JsonConfig cfg = tinv::JsonConfig::load("unet/config.json");
//   int L = cfg.get<int>("layers_per_block", 2);           // default when absent or null
//   auto ch = cfg.require<std::vector<int64_t>>("block_out_channels");
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"

namespace tinv {

// JSON text parsed, or tinv::Error(source, "invalid JSON: ...").
nlohmann::json parse_json(const std::string& text, const std::string& source);
// The file read and parsed; tinv::Error(path, "missing file" | "invalid JSON: ...").
nlohmann::json read_json_file(const std::string& path);

class JsonConfig {
 public:
  JsonConfig() = default;
  JsonConfig(nlohmann::json j, std::string source) : j_(std::move(j)), source_(std::move(source)) {}
  // Reads and parses the file; it must hold a JSON object.
  static JsonConfig load(const std::string& path);
  static JsonConfig parse(const std::string& text, const std::string& source);

  const nlohmann::json& json() const { return j_; }
  const std::string& source() const { return source_; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // Sub-object (e.g. BLIP's "text_config"); its source reads "file: text_config".
  JsonConfig sub(const std::string& key) const;

  template <typename T>
  T require(const std::string& key) const {
    TINV_CHECK(has(key), source_, "missing field '", key, "'");
    return convert<T>(key);
  }
  template <typename T>
  T get(const std::string& key, const T& fallback) const {
    return has(key) ? convert<T>(key) : fallback;
  }
  // Throws "file: field 'key' <message>" (for validation of values).
  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw Error(source_, "field '" + key + "' " + message);
  }

 private:
  template <typename T>
  T convert(const std::string& key) const {
    try {
      return j_.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
      fail(key, "has the wrong type (" + std::string(j_.at(key).type_name()) + "): " + j_.at(key).dump());
    }
  }
  nlohmann::json j_ = nlohmann::json::object();
  std::string source_;
};

}  // namespace tinv
