// Device and dtype choices: parsed once from the command line's text (parse_device, parse_dtype),
// checked against the machine when a command runs (resolve_device, check_dtype).
//
//   tinv::DeviceChoice d = tinv::parse_device("cuda:1");   // std::nullopt for "auto"
//   torch::Device dev = tinv::resolve_device(d);           // auto: CUDA when available
//   torch::ScalarType t = tinv::parse_dtype("bf16");
//   tinv::check_dtype(t, dev);                             // fp16 on the CPU is refused
#pragma once
#include <torch/types.h>

#include <optional>
#include <string>

namespace tinv {

// Where a command runs: a device, or std::nullopt for "auto" (CUDA when available, else the CPU).
using DeviceChoice = std::optional<torch::Device>;

// "auto" (std::nullopt), "cpu", "cuda", "cuda:N". Throws tinv::Error("--device", ...) for other
// text; whether the machine has that device is resolve_device's question.
DeviceChoice parse_device(const std::string& name);
// The text parse_device reads back: "auto", "cpu", "cuda", "cuda:N".
std::string device_name(const DeviceChoice& device);
// The device to run on: auto is CUDA when available, else the CPU. Throws
// tinv::Error("--device", ...) when CUDA is asked for but not available, or for a GPU index that
// does not exist.
torch::Device resolve_device(const DeviceChoice& device);

// "fp32" | "fp16" | "bf16" (also "float32", "float16", "bfloat16"). Throws
// tinv::Error("--dtype", ...) for other text.
torch::ScalarType parse_dtype(const std::string& name);
// Throws tinv::Error("--dtype", ...) unless `dtype` is fp32, bf16 or fp16, fp16 runs on CUDA,
// and bf16 runs on CUDA or on a CPU where cpu_bf16_supported().
void check_dtype(torch::ScalarType dtype, const torch::Device& device);
// Whether bf16 on this CPU keeps fp32 accumulation. libtorch 1.13 hands bf16 matmuls and
// convolutions to oneDNN only on CPUs with AVX-512 (BW, VL, DQ); elsewhere its own GEMM adds
// the products in bf16: on an AVX2 CPU a 2048-long dot product is off by 5% (0.3% with fp32
// accumulation) and the tiny SD UNet's output by 7%, past every bf16 tolerance, at no gain in
// speed. libtorch 2.x accumulates in fp32 everywhere.
bool cpu_bf16_supported();
// "fp32" | "fp16" | "bf16" (the text parse_dtype reads back; c10's name for other dtypes).
std::string dtype_name(torch::ScalarType dtype);

// TF32 on NVIDIA GPUs (Ampere and later). libtorch, like PyTorch, runs cuDNN's fp32
// convolutions in TF32 (a 10-bit mantissa; torch.backends.cudnn.allow_tf32) and cuBLAS's fp32
// matmuls in full fp32. set_cuda_tf32(false) makes both full fp32, as `tinv parity` does at
// fp32: TF32's error (SD UNet outputs off by ~1e-3 on an H200) is ten times the fixtures' fp32
// tolerances. set_cuda_tf32(true) lets both use TF32. No effect on the CPU.
void set_cuda_tf32(bool allowed);

}  // namespace tinv
