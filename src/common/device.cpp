#include "common/device.h"

#include <torch/cuda.h>

#include "common/error.h"

namespace tinv {

DeviceChoice parse_device(const std::string& name) {
  if (name == "auto") return std::nullopt;
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    try {
      torch::Device d(name);
      if (d.is_cuda()) return d;
    } catch (const c10::Error&) {
    }
    throw Error("--device", "invalid device '" + name + "'");
  }
  throw Error("--device", "unknown device '" + name + "' (use auto, cpu or cuda)");
}

std::string device_name(const DeviceChoice& device) { return device ? device->str() : "auto"; }

torch::Device resolve_device(const DeviceChoice& device) {
  if (!device) return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (!device->is_cuda()) return *device;
  TINV_CHECK(torch::cuda::is_available(), "--device",
             "CUDA was requested but this build of "
             "libtorch has no CUDA support or no GPU is visible");
  TINV_CHECK(!device->has_index() || device->index() < static_cast<int>(torch::cuda::device_count()), "--device",
             "no such GPU: ", device->str());
  return *device;
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kHalf;
  throw Error("--dtype", "unknown dtype '" + name + "' (use fp32, fp16 or bf16)");
}

void check_dtype(torch::ScalarType dtype, const torch::Device& device) {
  TINV_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16 || dtype == torch::kHalf, "--dtype",
             "unsupported dtype ", dtype_name(dtype), " (use fp32, fp16 or bf16)");
  TINV_CHECK(dtype != torch::kHalf || device.is_cuda(), "--dtype",
             "fp16 is only supported on CUDA (use fp32 or bf16 on CPU)");
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "fp32";
    case torch::kHalf: return "fp16";
    case torch::kBFloat16: return "bf16";
    default: return c10::toString(dtype);
  }
}

}  // namespace tinv
