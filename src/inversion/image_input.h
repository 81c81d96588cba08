// Training images for the inversion trainer: files (or folders of them) -> tinv::Image (the
// shared decoder, io/image.h: alpha over white, EXIF orientation) -> square crops in [-1, 1] at
// the training resolution.
//
//   auto files = tinv::collect_image_files({"photos/"});            // io/image.h
//   tinv::Image im = tinv::load_image(files[0]);                     // io/image.h
//   std::string note;
//   torch::Tensor x = tinv::prepare_training_image(im, 512, &note);  // float [3, 512, 512]
#pragma once
#include <torch/types.h>

#include <string>

#include "common/image.h"

namespace tinv {

// uint8 [H, W, 3] -> float32 [3, resolution, resolution] in [-1, 1]: centre crop to a square
// on the shorter side, then resize (bilinear, antialiased when shrinking). When the crop drops
// more than 10% of the image, or the image is upscaled or shrunk by more than 4x, a short
// human-readable note is written to *note (empty otherwise).
torch::Tensor prepare_training_image(const torch::Tensor& rgb, int64_t resolution, std::string* note = nullptr);
// The same from a decoded image.
torch::Tensor prepare_training_image(const Image& image, int64_t resolution, std::string* note = nullptr);

}  // namespace tinv
