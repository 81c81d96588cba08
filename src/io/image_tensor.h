// The converters between tinv::Image (common/image.h: 8-bit RGB, HWC) and tensors, for every
// caller (decoders, the world, captioning, training, reports):
//
//   torch::Tensor u8 = tinv::image_to_hwc(im);            // uint8 [H, W, 3], a copy
//   tinv::Image back = tinv::hwc_to_image(u8);            // == im
//   torch::Tensor v = tinv::image_to_tensor(im);          // float32 [3, H, W], 0..255
//   torch::Tensor u = tinv::image_to_unit_tensor(im);     // float32 [3, H, W], pixel / 255
//   torch::Tensor s = tinv::image_to_signed_tensor(im);   // float32 [3, H, W], pixel / 127.5 - 1
//   tinv::Image g = tinv::unit_tensor_to_image(decoded);  // [3, H, W] in [0, 1] -> round(x * 255)
//
// Tensors returned are on the CPU. Inputs may be on any device. Bad shapes or dtypes throw
// tinv::Error.
#pragma once
#include <torch/types.h>

#include <string>

#include "common/image.h"

namespace tinv {

// uint8 [H, W, 3], CPU, contiguous (a copy of the pixels).
torch::Tensor image_to_hwc(const Image& im);
// uint8 [H, W, 3] (any device or strides) -> Image. `where` names the tensor in errors.
Image hwc_to_image(const torch::Tensor& hwc, const std::string& where = "image");

// float32 [3, H, W] holding the 0..255 values, contiguous.
torch::Tensor image_to_tensor(const Image& im);
// float32 [3, H, W] in [0, 1]: pixel / 255.
torch::Tensor image_to_unit_tensor(const Image& im);
// float32 [3, H, W] in [-1, 1]: pixel / 127.5 - 1.
torch::Tensor image_to_signed_tensor(const Image& im);

// float [C, H, W] in [0, 1] (clamped, then round(x * 255)) -> uint8 [H, W, C], CPU, contiguous.
// Any C; no checks beyond dim() == 3.
torch::Tensor unit_to_hwc_uint8(const torch::Tensor& chw, const std::string& where = "image");
// float [3, H, W] in [0, 1] -> Image, through unit_to_hwc_uint8.
Image unit_tensor_to_image(const torch::Tensor& chw, const std::string& where = "image");

}  // namespace tinv
