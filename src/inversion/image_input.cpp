#include "inversion/image_input.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/error.h"
#include "io/image_tensor.h"

namespace tinv {

torch::Tensor prepare_training_image(const torch::Tensor& rgb, int64_t resolution, std::string* note) {
  TINV_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8, "image",
             "expected uint8 [H, W, 3], got ", rgb.sizes());
  TINV_CHECK(resolution >= 8, "--resolution", "must be >= 8, got ", resolution);
  const int64_t h = rgb.size(0), w = rgb.size(1), side = std::min(h, w);
  std::string msg;
  if (side * 10 < std::max(h, w) * 9) msg += str_cat("centre-cropped ", w, "x", h, " to ", side, "x", side, "; ");
  if (side < resolution)
    msg += str_cat("upscaled ", side, "px to ", resolution, "px (small image: expect blur); ");
  else if (side > 4 * resolution)
    msg += str_cat("downscaled ", side, "px to ", resolution, "px; ");
  if (note) *note = msg.empty() ? msg : msg.substr(0, msg.size() - 2);
  const int64_t top = (h - side) / 2, left = (w - side) / 2;
  auto x = rgb.slice(0, top, top + side).slice(1, left, left + side);  // [S, S, 3]
  x = x.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32);           // [1, 3, S, S]
  if (side != resolution) {
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{resolution, resolution})
                              .mode(torch::kBilinear)
                              .align_corners(false)
                              .antialias(side > resolution));
  }
  return (x[0] / 127.5 - 1.0).clamp(-1, 1).contiguous();  // [3, R, R]
}

torch::Tensor prepare_training_image(const Image& image, int64_t resolution, std::string* note) {
  return prepare_training_image(image_to_hwc(image), resolution, note);
}

}  // namespace tinv
