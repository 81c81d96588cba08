// FNV-1a, 64-bit: a small stable hash of bytes (seeds of derived random streams, fingerprints of
// run options and images in checkpoints). Not for security.
//
//   uint64_t h = tinv::fnv1a("concept:" + name);
//   h = tinv::fnv1a_bytes(bytes, n, h); // continue over more bytes
//   std::string s = tinv::hex64(h);     // "cbf29ce484222325": 16 lowercase hex digits
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tinv {

constexpr uint64_t kFnv1aBasis = 0xCBF29CE484222325ULL;  // 1469598103934665603
constexpr uint64_t kFnv1aPrime = 0x100000001B3ULL;       // 1099511628211

// (Its own name: fnv1a("text", seed) must not pick this overload with n = seed.)
inline uint64_t fnv1a_bytes(const void* data, size_t n, uint64_t h = kFnv1aBasis) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnv1aPrime;
  return h;
}

inline uint64_t fnv1a(const std::string& s, uint64_t h = kFnv1aBasis) { return fnv1a_bytes(s.data(), s.size(), h); }

inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace tinv
