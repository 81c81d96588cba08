// Training checkpoints, one writer for both trainers (apps/invert, apps/world_train): a
// safetensors file of named tensors with the number of updates done ("step") and string
// metadata, written atomically (a crash leaves the previous checkpoint intact).
//
//   tinv::save_checkpoint("run.ckpt.safetensors", 120, {{"p.w", w}, {"m.w", m}}, {{"config", cfg}});
//   tinv::Checkpoint ck = tinv::open_checkpoint("run.ckpt.safetensors", "not a tinv checkpoint");
//   ck.step;                    // 120
//   ck.file.get("p.w");         // float32 copy
//
// The file is plain safetensors (docs/FORMATS.md): the metadata map is the header's
// __metadata__ with "step" added; tensors are stored detached, on the CPU, in their own dtype.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace tinv {

struct Checkpoint {
  SafeTensors file;
  int64_t step = 0;  // updates done when it was written
  const std::map<std::string, std::string>& metadata() const { return file.metadata(); }
};

// Writes `tensors` (detached, moved to the CPU) and `metadata` plus {"step": step} to `path`
// atomically. Throws tinv::Error naming the file on failure.
void save_checkpoint(const std::string& path, int64_t step,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     std::map<std::string, std::string> metadata);

// Opens a checkpoint. Throws tinv::Error(path, not_ours) when the file has no "step" metadata,
// and tinv::Error(path, ...) when the step is not a non-negative integer.
Checkpoint open_checkpoint(const std::string& path, const std::string& not_ours);

// Copies the saved tensor `name` into `dst` (same shape, any dtype). Throws tinv::Error naming
// the file and tensor when it is missing or mis-shaped.
void restore_tensor(const Checkpoint& ck, const std::string& name, torch::Tensor& dst);

}  // namespace tinv
