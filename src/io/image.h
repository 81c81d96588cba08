// Image input shared by all of tinv (the trainer, BLIP captioning, the demo, the study): one
// decoder, EXIF orientation, PIL-exact resizing, the image-file lister.
//
//   tinv::Image im = tinv::load_image("cat.webp");       // 8-bit RGB, EXIF orientation applied
//   tinv::Image small = tinv::resize_pil(im, 384, 384);  // PIL Image.resize(..., BICUBIC)
//   auto files = tinv::collect_image_files({"photos/"}); // sorted, image extensions
//
// Formats, chosen by the file's magic bytes (never its extension):
//   - WebP (libwebp: lossy, lossless, with or without alpha; still images only);
//   - TIFF (libtiff: 8- and 16-bit, RGB, RGBA, grayscale, palette, ...; the first page);
//   - everything stb_image decodes: PNG, JPEG baseline+progressive, BMP, GIF (first frame),
//     TGA, PSD (composite), PNM, HDR.
// Every image is converted to 8-bit RGB:
//   - grayscale is replicated to the three channels, palette images are expanded;
//   - alpha is composited over white: out = round((a * c + (255 - a) * 255) / 255), so a fully
//     transparent pixel is white (255) and an opaque one keeps its colour;
//   - 16-bit channels (alpha included) are rounded to 8 bits first: v8 = round(v16 / 257)
//     (TIFF: libtiff's own 16-to-8 conversion).
// JPEG files honour the EXIF Orientation tag (1..8) like PIL's ImageOps.exif_transpose.
// Images with a zero dimension or more than kMaxImagePixels pixels are refused from the header,
// before decoding. Every failure (missing, unreadable, truncated, corrupt, not an image, too
// large) throws a one-line tinv::Error naming the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/image.h"

namespace tinv {

// Largest accepted image: 100 megapixels (e.g. 10000 x 10000), checked from the header.
constexpr int64_t kMaxImagePixels = 100'000'000;

// The formats the decoder tells apart by their first bytes.
enum class ImageFormat { kWebp, kTiff, kOther /* stb_image decides */ };
ImageFormat sniff_image_format(const uint8_t* data, size_t size);

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
Image resize_pil(const Image& im, int width, int height, ResampleFilter filter = ResampleFilter::kBicubic);
inline Image resize_bicubic_pil(const Image& im, int width, int height) {
  return resize_pil(im, width, height, ResampleFilter::kBicubic);
}

// Alpha over white, as the decoder composites: round((a * c + (255 - a) * 255) / 255).
inline uint8_t over_white(uint8_t c, uint8_t a) { return static_cast<uint8_t>((a * c + (255 - a) * 255 + 127) / 255); }

// The file extensions collect_image_files takes from folders (lower case, no dot): png, jpg,
// jpeg, bmp, gif, tga, psd, pnm, ppm, pgm, hdr, webp, tif, tiff. Case-insensitive.
bool has_image_extension(const std::string& name);

// Each argument is a file (taken as is, whatever its name) or a folder (its files with an image
// extension, sorted by name, not recursive; hidden files skipped). Throws tinv::Error for a
// missing path, an empty list, or a folder without image files.
std::vector<std::string> collect_image_files(const std::vector<std::string>& paths);

}  // namespace tinv
