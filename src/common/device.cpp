#include "common/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/version.h>

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
  TINV_CHECK(dtype != torch::kBFloat16 || !device.is_cpu() || cpu_bf16_supported(), "--dtype",
             "bf16 on this CPU needs AVX-512 with libtorch ", TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR,
             " (without it, bf16 sums run in bf16: results off by ~7%); use fp32, or a libtorch 2.x build");
}

bool cpu_bf16_supported() {
#if TORCH_VERSION_MAJOR >= 2
  return true;
#elif defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "fp32";
    case torch::kHalf: return "fp16";
    case torch::kBFloat16: return "bf16";
    default: return c10::toString(dtype);
  }
}

void set_cuda_tf32(bool allowed) {
  at::globalContext().setAllowTF32CuDNN(allowed);
  at::globalContext().setAllowTF32CuBLAS(allowed);
}

}  // namespace tinv
