// The one image type of tinv: 8-bit RGB pixels, row-major, interleaved. Decoders (io/image.h)
// produce it, the world renderer draws it (world::Image is this type), the captioner reads it,
// and io/image_tensor.h converts it to and from tensors.
//
//   tinv::Image im(64, 48);            // black
//   im.at(3, 2)[1] = 255;              // unchecked pointer to pixel (3, 2): {r, g, b}
//   tinv::Rgb p = im.pixel(3, 2);      // checked copy: {0, 255, 0}
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tinv {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

// Pixel (x, y) channel c is pixels[(y * width + x) * 3 + c]; x runs right, y down.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3, 0) {}
  Image(int w, int h, std::vector<uint8_t> px) : width(w), height(h), pixels(std::move(px)) {}

  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * 3]; }
  const uint8_t* at(int x, int y) const { return &pixels[(static_cast<size_t>(y) * width + x) * 3]; }
  // Bounds-checked: throws tinv::Error for (x, y) outside the image.
  Rgb pixel(int x, int y) const;
  // width, height > 0 and pixels.size() == width * height * 3.
  bool valid() const { return width > 0 && height > 0 && pixels.size() == static_cast<size_t>(width) * height * 3; }
  bool operator==(const Image& o) const { return width == o.width && height == o.height && pixels == o.pixels; }
  bool operator!=(const Image& o) const { return !(*this == o); }
};

}  // namespace tinv
