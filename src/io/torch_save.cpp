#include "io/torch_save.h"

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "io/torch_archive.h"

namespace tinv {

PickleValue load_torch_archive(const TorchArchiveReader& archive) {
  const std::string& path = archive.path();
  if (!archive.has("data.pkl")) throw Error(path, "not a PyTorch checkpoint: the zip has no data.pkl");
  if (archive.has("byteorder")) {
    std::string value = archive.read("byteorder").str();
    if (value != "little") throw Error(path, str_cat("byte order '", value, "' is not supported (only little)"));
  }
  TorchRecord pickle = archive.read("data.pkl");
  StorageLoader loader = [&](const std::string& key, torch::ScalarType dtype, int64_t numel) {
    const std::string where = path + ": storage '" + key + "'";
    TorchRecord r = archive.read("data/" + key);
    uint64_t elem = c10::elementSize(dtype);
    if (static_cast<uint64_t>(numel) > r.size / elem || r.size != numel * elem)
      throw Error(where,
                  str_cat("holds ", r.size, " bytes but the pickle says ", numel, " x ", elem, "-byte elements"));
    // A view of libtorch's buffer (allocated by the CPU allocator, so aligned for any dtype).
    std::shared_ptr<const void> owner = r.owner;
    return torch::from_blob(
        const_cast<uint8_t*>(r.data), {numel}, [owner](void*) {}, torch::TensorOptions().dtype(dtype));
  };
  return unpickle(pickle.data, pickle.size, loader, path + ": data.pkl");
}

bool is_legacy_torch_file(const uint8_t* data, size_t size) {
  // Pre-1.6 torch.save: a pickled magic number 0x1950a86a20f9469cfc6c as LONG1.
  static const uint8_t kMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return size >= sizeof(kMagic) && std::memcmp(data, kMagic, sizeof(kMagic)) == 0;
}

PickleValue load_torch_file(const std::string& path) {
  std::vector<uint8_t> head(16);
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
    in.read(reinterpret_cast<char*>(head.data()), head.size());
    head.resize(static_cast<size_t>(in.gcount()));
  }
  if (is_legacy_torch_file(head.data(), head.size()))
    throw Error(path,
                "legacy .pt format (torch < 1.6) is not supported; re-save it with "
                "torch>=1.6 (torch.save(torch.load(f), f))");
  if (!looks_like_zip(head.data(), head.size())) throw Error(path, "not a PyTorch checkpoint (no zip signature)");
  return load_torch_archive(TorchArchiveReader::open(path));
}

void save_torch_file(const std::string& path, const PickleValue& value) {
  std::vector<torch::Tensor> storages;
  std::string pkl;
  try {
    pkl = pickle_torch(value, storages);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
  TorchArchiveWriter zip(path);
  zip.add("data.pkl", pkl.data(), pkl.size());
  zip.add("byteorder", "little", 6);
  for (size_t i = 0; i < storages.size(); ++i)
    zip.add("data/" + std::to_string(i), storages[i].data_ptr(), storages[i].nbytes());
  std::vector<uint8_t> bytes = zip.finish();
  write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace tinv
