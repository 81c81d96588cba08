// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as ZIP and PNG use it: zlib's crc32_z.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tinv {

// Continues `crc` (0 to start) over [data, data + size). crc32("123456789") == 0xCBF43926.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace tinv
