// Small helpers for printing shapes in error messages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tinv {

// "[320, 4, 3, 3]"
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace tinv
