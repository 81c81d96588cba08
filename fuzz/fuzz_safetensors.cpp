// libFuzzer target: SafeTensors::from_buffer on arbitrary bytes. Every malformed file must throw
// tinv::Error (anything else escaping, or a sanitizer report, is a finding); a file that parses
// must give views whose byte sizes lie inside the buffer.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = std::make_shared<std::vector<uint8_t>>(data, data + size);
  try {
    auto file = tinv::SafeTensors::from_buffer(bytes, "fuzz.safetensors");
    for (const auto& name : file.keys()) {
      const auto& info = file.info(name);
      if (info.end < info.begin || info.end > size) __builtin_trap();
      torch::Tensor v = file.view(name);
      if (static_cast<uint64_t>(v.numel()) * v.element_size() != info.end - info.begin) __builtin_trap();
      if (v.numel() > 0 && v.numel() < 4096) {
        volatile double sum = file.get(name).sum().item<double>();  // touches every byte
        (void)sum;
      }
    }
  } catch (const tinv::Error&) {
  }
  return 0;
}
