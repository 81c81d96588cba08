// Training images for the inversion trainer: files (or folders of them) -> RGB uint8 [H,W,3]
// -> square crops in [-1, 1] at the training resolution.
//
//   auto files = tinv::collect_image_files({"photos/"});          // sorted, image extensions
//   torch::Tensor rgb = tinv::read_rgb_image(files[0]);           // uint8 [H, W, 3]
//   std::string note;
//   torch::Tensor x = tinv::prepare_training_image(rgb, 512, &note);  // float [3, 512, 512]
//
// Stand-in for the shared loader (src/io/image.h, another branch): decoding is stb_image,
// asked for RGBA and composited over white, so grayscale, alpha, palette and 16-bit PNGs
// are converted rather than refused. To be swapped for the shared loader at merge time.
#pragma once
#include <torch/types.h>

#include <string>
#include <vector>

namespace tinv {

// Each argument is a file (taken as is) or a folder (its files with an image extension —
// png, jpg, jpeg, bmp, gif, tga, psd, pnm/ppm/pgm, hdr — sorted by name, not recursive).
// Throws tinv::Error for a missing path, or when no image file results.
std::vector<std::string> collect_image_files(const std::vector<std::string>& paths);

// Decodes one file to uint8 [H, W, 3] (alpha composited over white). Throws tinv::Error naming
// the file when it is unreadable, empty, truncated, or not an image format stb reads.
torch::Tensor read_rgb_image(const std::string& path);

// uint8 [H, W, 3] -> float32 [3, resolution, resolution] in [-1, 1]: centre crop to a square
// on the shorter side, then resize (bilinear, antialiased when shrinking). When the crop drops
// more than 10% of the image, or the image is upscaled or shrunk by more than 4x, a short
// human-readable note is written to *note (empty otherwise).
torch::Tensor prepare_training_image(const torch::Tensor& rgb, int64_t resolution,
                                     std::string* note = nullptr);

}  // namespace tinv
