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
// Throws tinv::Error("--dtype", ...) unless `dtype` is fp32, bf16 or fp16, and fp16 runs on CUDA.
void check_dtype(torch::ScalarType dtype, const torch::Device& device);
// "fp32" | "fp16" | "bf16" (the text parse_dtype reads back; c10's name for other dtypes).
std::string dtype_name(torch::ScalarType dtype);

}  // namespace tinv
