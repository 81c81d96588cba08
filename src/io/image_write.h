// PNG output with text metadata (A1111-style "parameters"), written atomically.
//
//   tinv::save_png("out/0001.png", image, {{"parameters", "a photo of <cat>\nSteps: 25, ..."}});
//   tinv::save_png("out/grid.png", tinv::make_grid(images, 4));
//
// Encoded by libpng (8-bit gray, RGB or RGBA, no interlacing, zlib's default level); the text
// chunks come before the pixel data (png_set_text) as tEXt (keyword and text in Latin-1) or,
// when the text has characters outside Latin-1, iTXt (UTF-8, uncompressed, no language), as
// PIL's PngInfo.add_text does.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/image.h"

namespace tinv {

using TextChunks = std::vector<std::pair<std::string, std::string>>;  // keyword -> text (UTF-8)

// `image`: float [C, H, W] with values in [0, 1] (clamped, then round(x * 255)), or uint8
// [H, W, C]; C in {1, 3, 4}. Keywords must be 1-79 printable Latin-1 characters; text must be
// valid UTF-8. Throws tinv::Error naming the path on a bad image, keyword, or failed write;
// on failure no file is left at `path`.
void save_png(const std::string& path, const torch::Tensor& image, const TextChunks& text_chunks = {});

// The PNG file bytes save_png writes (exposed for tests and in-memory use).
std::vector<uint8_t> encode_png(const torch::Tensor& image, const TextChunks& text_chunks = {},
                                const std::string& where = "png");

// The same for a tinv::Image (RGB).
void save_png(const std::string& path, const Image& image, const TextChunks& text_chunks = {});
std::vector<uint8_t> encode_png(const Image& image, const TextChunks& text_chunks = {},
                                const std::string& where = "png");

// Tiles same-shaped [C, H, W] images row-major into `cols` columns: [C, rows*H, cols*W], rows =
// ceil(n / cols), empty cells zero. cols larger than n is reduced to n. Throws on an empty list,
// cols < 1, or mismatched shapes/dtypes.
torch::Tensor make_grid(const std::vector<torch::Tensor>& images, int64_t cols);

}  // namespace tinv
