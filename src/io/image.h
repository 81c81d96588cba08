// Image input shared by all of tinv: decoding (stb_image), EXIF orientation, PIL-exact resizing.
//
//   tinv::Image im = tinv::load_image("cat.jpg");        // 8-bit RGB, EXIF orientation applied
//   tinv::Image small = tinv::resize_pil(im, 384, 384);  // PIL Image.resize(..., BICUBIC)
//   torch::Tensor x = tinv::image_to_tensor(small);      // float32 [3, H, W], values 0..255
//
// Formats: whatever stb_image decodes (PNG, JPEG baseline+progressive, BMP, GIF (first frame),
// TGA, PSD (composite), PNM, HDR). Every image is converted to 8-bit RGB:
//   - grayscale is replicated to the three channels, palette images are expanded;
//   - alpha is dropped (not composited), as PIL's Image.convert("RGB") does;
//   - 16-bit channels are rounded to 8 bits: v8 = round(v16 / 257).
// JPEG files honour the EXIF Orientation tag (1..8) like PIL's ImageOps.exif_transpose.
// Images with a zero dimension or more than kMaxImagePixels pixels are refused before decoding.
// Every failure (missing, unreadable, truncated, corrupt, not an image, too large) throws
// tinv::Error naming the file.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tinv {

// Largest accepted image: 100 megapixels (e.g. 10000 x 10000), checked from the header.
constexpr int64_t kMaxImagePixels = 100'000'000;

// 8-bit RGB pixels, row-major, interleaved: rgb[(y * width + x) * 3 + c].
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 0) {}
  uint8_t* at(int x, int y) { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
  const uint8_t* at(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

// Reads and decodes a file. Throws tinv::Error("<path>", reason) on any failure.
Image load_image(const std::string& path);
// Decodes an encoded image held in memory; `name` is used in error messages.
Image load_image_from_memory(const uint8_t* data, size_t size, const std::string& name);

// EXIF Orientation (1..8) of a JPEG file's APP1 segment; 1 when absent or unparsable.
int jpeg_exif_orientation(const uint8_t* data, size_t size);
// Applies an EXIF orientation (2: mirror, 3: rotate 180, 4: flip, 5: transpose, 6: rotate 90
// clockwise, 7: transverse, 8: rotate 90 counter-clockwise); 1 or unknown values return `im`.
Image apply_exif_orientation(const Image& im, int orientation);

// PIL resampling filters (PIL.Image.Resampling values).
enum class ResampleFilter { kBilinear = 2, kBicubic = 3 };

// PIL's Image.resize(size, filter) on an RGB image, bit-exact with Pillow's ImagingResample:
// separable convolution (bicubic a = -0.5, support scaled by the downscale factor, i.e.
// antialiased), 22-bit fixed-point coefficients, horizontal pass first into uint8 (rounded
// and clamped), then the vertical pass. Throws tinv::Error for sizes < 1.
Image resize_pil(const Image& im, int width, int height,
                 ResampleFilter filter = ResampleFilter::kBicubic);
inline Image resize_bicubic_pil(const Image& im, int width, int height) {
  return resize_pil(im, width, height, ResampleFilter::kBicubic);
}

// float32 [3, H, W] holding the 0..255 values (CPU).
torch::Tensor image_to_tensor(const Image& im);

}  // namespace tinv
