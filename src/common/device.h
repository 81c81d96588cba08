// Device and dtype selection from user strings.
#pragma once
#include <torch/types.h>

#include <string>

namespace tinv {

// "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N". Throws on unknown names or
// when CUDA is asked for but not available.
torch::Device resolve_device(const std::string& name);
// "fp32" | "fp16" | "bf16" (also "float32", "float16", "bfloat16"). fp16 on CPU is refused.
torch::ScalarType resolve_dtype(const std::string& name, const torch::Device& device);
std::string dtype_name(torch::ScalarType dtype);

}  // namespace tinv
