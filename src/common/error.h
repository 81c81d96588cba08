// One exception type for everything that goes wrong in tinv: it carries what failed and
// where (file, tensor, field). The CLI prints what() on one line and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tinv {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
  // "where: message", e.g. Error("unet/config.json", "field 'layers_per_block' must be >= 1").
  Error(const std::string& where, const std::string& message)
      : std::runtime_error(where.empty() ? message : where + ": " + message) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& value, const Rest&... rest) {
  os << value;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

// A number with up to 9 significant digits (enough to round-trip a float), e.g. 0.005, 1e-05.
inline std::string format_number(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

}  // namespace tinv

// Throws tinv::Error(where, message...) unless cond holds.
#define TINV_CHECK(cond, where, ...)                                         \
  do {                                                                       \
    if (!(cond)) throw ::tinv::Error((where), ::tinv::str_cat(__VA_ARGS__)); \
  } while (0)
