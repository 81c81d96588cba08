// Minimal read-only ZIP reader for PyTorch checkpoints (torch.save writes a zip of stored,
// uncompressed entries; big checkpoints use ZIP64).
//
//   auto zip = tinv::ZipReader::open("embedding.pt");
//   const tinv::ZipEntry* pkl = zip.find_suffix("/data.pkl");
//   std::string bytes = zip.read(*pkl);   // CRC-checked copy
//
// Reads the end of central directory (ZIP64 too), the central directory and each local header.
// Every offset and length is bounds-checked against the file: a truncated or corrupt zip, a
// compressed or encrypted entry, a duplicate name -> tinv::Error naming the file (and entry).
#pragma once
#include "common/crc32.h"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tinv {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // absolute offset of the entry's bytes in the file
  uint64_t size = 0;         // bytes (stored entries: compressed size == uncompressed size)
  uint32_t crc32 = 0;        // as recorded in the central directory
};

class ZipReader {
 public:
  // Maps the file read-only and parses its directory.
  static ZipReader open(const std::string& path);
  // Parses an in-memory zip; `name` is used in error messages.
  static ZipReader from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes,
                               const std::string& name);
  // True when the bytes start like a zip ("PK\3\4" local header, or "PK\5\6" for an empty zip).
  static bool looks_like_zip(const uint8_t* data, size_t size);

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry with exactly this name, or nullptr.
  const ZipEntry* find(const std::string& name) const;
  // The single entry whose name ends with `suffix` (e.g. "/data.pkl"), or nullptr when none;
  // throws when several match.
  const ZipEntry* find_suffix(const std::string& suffix) const;

  // Pointer to the entry's bytes; valid while this reader (or a copy) lives. Not CRC-checked.
  const uint8_t* data(const ZipEntry& entry) const { return base_ + entry.data_offset; }
  // Copy of the entry's bytes; throws on a CRC mismatch (a recorded CRC of 0 is not checked:
  // newer torch can skip computing it).
  std::string read(const ZipEntry& entry) const;
  // Throws tinv::Error on a CRC mismatch (same rule as read()).
  void check_crc(const ZipEntry& entry) const;

 private:
  void parse();

  std::string path_;
  std::shared_ptr<const void> owner_;  // keeps the mapping / buffer alive
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<ZipEntry> entries_;
};


}  // namespace tinv
