#include "common/image.h"

#include "common/error.h"

namespace tinv {

Rgb Image::pixel(int x, int y) const {
  TINV_CHECK(x >= 0 && x < width && y >= 0 && y < height, "Image::pixel", "pixel (", x, ", ", y, ") outside ", width,
             "x", height);
  const uint8_t* p = at(x, y);
  return {p[0], p[1], p[2]};
}

}  // namespace tinv
