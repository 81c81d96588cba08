// Minimal ZIP writer for torch.save-compatible archives: stored (uncompressed) entries whose
// data starts at a multiple of 64 bytes, as PyTorch's writer lays them out (the local header's
// extra field is padded to get there), so storages can be memory-mapped when read back.
//
//   tinv::ZipWriter zip;
//   zip.add("archive/data.pkl", pkl.data(), pkl.size());
//   std::vector<uint8_t> bytes = zip.finish("out.pt");
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tinv {

class ZipWriter {
 public:
  // Appends an entry (bytes are copied). Entries larger than 4 GiB are refused (no ZIP64).
  void add(const std::string& name, const void* data, size_t size);
  // The whole archive: entries, central directory, end record. `where` names errors.
  std::vector<uint8_t> finish(const std::string& where);

  static constexpr size_t kAlignment = 64;

 private:
  struct Entry {
    std::string name;
    uint64_t header_offset;
    uint32_t crc, size;
  };
  std::vector<uint8_t> out_;
  std::vector<Entry> entries_;
  std::string error_;
};

}  // namespace tinv
