#include "io/zip_writer.h"

#include <cstring>

#include "common/error.h"
#include "io/zip_reader.h"

namespace tinv {
namespace {

void put(std::vector<uint8_t>& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

constexpr uint16_t kVersion = 20;             // 2.0: stored entries, no ZIP64
constexpr uint16_t kDosTime = 0, kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01 00:00
constexpr uint16_t kPaddingExtraId = 0x4246;  // "FB", the id PyTorch's writer pads with

}  // namespace

void ZipWriter::add(const std::string& name, const void* data, size_t size) {
  if (size > 0xFFFFFFFEu || name.size() > 0xFFFF || out_.size() > 0xFFFFFFFEu) {
    if (error_.empty()) error_ = str_cat("zip entry '", name, "' is too large (no ZIP64 writing)");
    return;
  }
  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  Entry e{name, out_.size(), crc32(bytes, size), static_cast<uint32_t>(size)};
  // Local header (30 bytes) + name + extra field "FB" padding the data to kAlignment.
  size_t start = out_.size() + 30 + name.size() + 4;
  size_t pad = (kAlignment - start % kAlignment) % kAlignment;
  put(out_, 0x04034b50, 4);
  put(out_, kVersion, 2);
  put(out_, 0, 2);  // flags
  put(out_, 0, 2);  // method: stored
  put(out_, kDosTime, 2);
  put(out_, kDosDate, 2);
  put(out_, e.crc, 4);
  put(out_, size, 4);
  put(out_, size, 4);
  put(out_, name.size(), 2);
  put(out_, 4 + pad, 2);
  out_.insert(out_.end(), name.begin(), name.end());
  put(out_, kPaddingExtraId, 2);
  put(out_, pad, 2);
  out_.insert(out_.end(), pad, 'Z');
  if (size) out_.insert(out_.end(), bytes, bytes + size);
  entries_.push_back(std::move(e));
}

std::vector<uint8_t> ZipWriter::finish(const std::string& where) {
  if (!error_.empty()) throw Error(where, error_);
  uint64_t cd_offset = out_.size();
  for (const Entry& e : entries_) {
    put(out_, 0x02014b50, 4);
    put(out_, kVersion, 2);  // version made by
    put(out_, kVersion, 2);  // version needed
    put(out_, 0, 2);
    put(out_, 0, 2);
    put(out_, kDosTime, 2);
    put(out_, kDosDate, 2);
    put(out_, e.crc, 4);
    put(out_, e.size, 4);
    put(out_, e.size, 4);
    put(out_, e.name.size(), 2);
    put(out_, 0, 2);  // extra
    put(out_, 0, 2);  // comment
    put(out_, 0, 2);  // disk
    put(out_, 0, 2);  // internal attributes
    put(out_, 0, 4);  // external attributes
    put(out_, e.header_offset, 4);
    out_.insert(out_.end(), e.name.begin(), e.name.end());
  }
  uint64_t cd_size = out_.size() - cd_offset;
  if (out_.size() > 0xFFFFFFFEu || entries_.size() > 0xFFFE)
    throw Error(where, "zip archive too large (no ZIP64 writing)");
  put(out_, 0x06054b50, 4);
  put(out_, 0, 2);
  put(out_, 0, 2);
  put(out_, entries_.size(), 2);
  put(out_, entries_.size(), 2);
  put(out_, cd_size, 4);
  put(out_, cd_offset, 4);
  put(out_, 0, 2);  // comment length
  return std::move(out_);
}

}  // namespace tinv
