// Training checkpoints (see checkpoint.h).
#include "io/checkpoint.h"

#include <torch/torch.h>

#include "common/error.h"

namespace tinv {

void save_checkpoint(const std::string& path, int64_t step,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     std::map<std::string, std::string> metadata) {
  TINV_CHECK(step >= 0, path, "negative checkpoint step ", step);
  std::vector<std::pair<std::string, torch::Tensor>> cpu;
  cpu.reserve(tensors.size());
  for (const auto& [name, t] : tensors) cpu.emplace_back(name, t.detach().cpu());
  metadata["step"] = std::to_string(step);
  save_safetensors(path, cpu, metadata);
}

Checkpoint open_checkpoint(const std::string& path, const std::string& not_ours) {
  Checkpoint ck{SafeTensors::open(path)};
  auto it = ck.metadata().find("step");
  TINV_CHECK(it != ck.metadata().end(), path, not_ours);
  size_t used = 0;
  try {
    ck.step = std::stoll(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TINV_CHECK(used == it->second.size() && !it->second.empty() && ck.step >= 0, path, "checkpoint step '", it->second,
             "' is not a non-negative integer");
  return ck;
}

void restore_tensor(const Checkpoint& ck, const std::string& name, torch::Tensor& dst) {
  const std::string& path = ck.file.path();
  TINV_CHECK(ck.file.contains(name), path, "missing tensor '", name, "'");
  auto src = ck.file.get(name, dst.scalar_type());
  TINV_CHECK(src.sizes() == dst.sizes(), path, "tensor '", name, "' has the wrong shape");
  torch::NoGradGuard no_grad;
  dst.copy_(src);
}

}  // namespace tinv
