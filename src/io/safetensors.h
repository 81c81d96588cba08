// safetensors reading (memory-mapped, fully validated) and writing (atomic).
//
//   auto file = tinv::SafeTensors::open("unet/diffusion_pytorch_model.safetensors");
//   torch::Tensor w = file.get("conv_in.weight");          // converted to float32
//   tinv::StateDict sd = file.state_dict();                 // zero-copy views, native dtype
//   tinv::save_safetensors("out.safetensors", {{"x", t}}, {{"key", "value"}});
//
// Every rule of the format is checked on open (see docs/FORMATS.md): header length within the
// file, UTF-8 JSON object, known dtypes, shapes with non-negative dims, offsets contiguous from 0
// without gaps or overlaps, byte sizes equal to numel * element size, buffer ending exactly at
// the end of the file, no duplicate names. Violations throw tinv::Error naming file and tensor.
#pragma once
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tinv {

// Name -> tensor, ordered by name. Tensors may be views of a memory-mapped file.
using StateDict = std::map<std::string, torch::Tensor>;

struct TensorInfo {
  std::string dtype;  // as written in the file: "F32", "F16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data buffer
};

class SafeTensors {
 public:
  // Maps and validates the file. Throws tinv::Error on any violation.
  static SafeTensors open(const std::string& path);
  // Parses and validates an in-memory file (used by the fuzz target and tests).
  static SafeTensors from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes, const std::string& name);

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& infos() const { return infos_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> keys() const;
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // Zero-copy view in the file's dtype (keeps the mapping alive). Throws if name is absent.
  torch::Tensor view(const std::string& name) const;
  // Copy converted to `dtype` (float dtypes convert between each other; integer tensors are
  // returned in their own dtype when dtype is floating and the file's dtype is integral).
  torch::Tensor get(const std::string& name, torch::ScalarType dtype = torch::kFloat32) const;
  // Every tensor as a zero-copy view.
  StateDict state_dict() const;

 private:
  std::string path_;
  std::shared_ptr<const void> mapping_;  // owns the bytes
  const uint8_t* data_ = nullptr;        // start of the data buffer
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

// Element size and torch dtype of a safetensors dtype string; throws on unknown dtypes.
torch::ScalarType safetensors_dtype(const std::string& dtype, const std::string& where);
std::string safetensors_dtype_name(torch::ScalarType dtype);

// Writes tensors (made contiguous, moved to CPU) and string metadata to `path` atomically:
// a temporary file in the same folder is written, flushed and renamed over `path`.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Loads every tensor of a model file: a single .safetensors, or a sharded checkpoint through
// its `*.safetensors.index.json` (weight_map name -> shard). Views keep the files mapped.
StateDict load_state_dict_file(const std::string& path);

}  // namespace tinv
