// Small string helpers shared by the commands.
//
//   tinv::valid_name("red-cube_2")  -> true   (1-64 letters, digits, '_' or '-')
//   tinv::trim("  a cat ")          -> "a cat" (spaces only)
#pragma once
#include <cctype>
#include <string>

namespace tinv {

// A placeholder / concept name: 1 to 64 ASCII letters, digits, '_' or '-'.
inline bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

// `s` without leading and trailing spaces (' ' only; tabs and newlines are kept).
inline std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace tinv
