// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as ZIP and PNG use it.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace tinv {

// Continues `crc` (0 to start) over [data, data + size). crc32("123456789") == 0xCBF43926.
inline uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace tinv
