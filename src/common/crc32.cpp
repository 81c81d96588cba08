#include "common/crc32.h"

#include <zlib.h>

namespace tinv {

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  if (size == 0) return crc;  // crc32_z(crc, NULL, 0) would return 0
  return static_cast<uint32_t>(::crc32_z(crc, data, size));
}

}  // namespace tinv
