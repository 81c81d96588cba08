#include "io/image_tensor.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/error.h"
#include "common/shape.h"

namespace tinv {
namespace {

// uint8 [H, W, 3] view of the pixels (no copy; valid while `im` lives).
torch::Tensor hwc_view(const Image& im, const char* what) {
  TINV_CHECK(im.valid(), what, "inconsistent image ", im.width, "x", im.height, " with ", im.pixels.size(), " bytes");
  return torch::from_blob(const_cast<uint8_t*>(im.pixels.data()), {im.height, im.width, 3}, torch::kUInt8);
}

}  // namespace

torch::Tensor image_to_hwc(const Image& im) { return hwc_view(im, "image_to_hwc").clone(); }

Image hwc_to_image(const torch::Tensor& hwc, const std::string& where) {
  TINV_CHECK(hwc.defined() && hwc.dim() == 3 && hwc.size(2) == 3 && hwc.scalar_type() == torch::kUInt8, where,
             "expected uint8 [H, W, 3], got ",
             hwc.defined() ? shape_str(hwc.sizes().vec()) : std::string("an undefined tensor"));
  TINV_CHECK(hwc.size(0) > 0 && hwc.size(1) > 0 && hwc.size(0) <= INT32_MAX && hwc.size(1) <= INT32_MAX, where,
             "bad image size ", shape_str(hwc.sizes().vec()));
  const torch::Tensor c = hwc.to(torch::kCPU).contiguous();
  Image im(static_cast<int>(c.size(1)), static_cast<int>(c.size(0)));
  std::copy_n(c.data_ptr<uint8_t>(), im.pixels.size(), im.pixels.begin());
  return im;
}

torch::Tensor image_to_tensor(const Image& im) {
  return hwc_view(im, "image_to_tensor").permute({2, 0, 1}).to(torch::kFloat32).contiguous();
}

torch::Tensor image_to_unit_tensor(const Image& im) {
  return hwc_view(im, "image_to_unit_tensor").permute({2, 0, 1}).to(torch::kFloat32) / 255.0;
}

torch::Tensor image_to_signed_tensor(const Image& im) {
  return hwc_view(im, "image_to_signed_tensor").permute({2, 0, 1}).to(torch::kFloat32).div(127.5).sub(1.0);
}

torch::Tensor unit_to_hwc_uint8(const torch::Tensor& chw, const std::string& where) {
  TINV_CHECK(chw.defined() && chw.dim() == 3 && chw.is_floating_point(), where,
             "expected a float image [C, H, W], got ",
             chw.defined() ? shape_str(chw.sizes().vec()) : std::string("an undefined tensor"));
  return (chw.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255)
      .round()
      .to(torch::kUInt8)
      .permute({1, 2, 0})
      .contiguous();
}

Image unit_tensor_to_image(const torch::Tensor& chw, const std::string& where) {
  TINV_CHECK(chw.defined() && chw.dim() == 3 && chw.size(0) == 3, where, "expected an RGB image [3, H, W], got ",
             chw.defined() ? shape_str(chw.sizes().vec()) : std::string("an undefined tensor"));
  return hwc_to_image(unit_to_hwc_uint8(chw, where), where);
}

}  // namespace tinv
