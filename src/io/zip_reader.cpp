#include "io/zip_reader.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "common/error.h"
#include "common/fs.h"

namespace tinv {
namespace {

// Record signatures and fixed sizes (APPNOTE.TXT sections 4.3.7, 4.3.12, 4.3.14-16).
constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64Sig = 0x06064b50, kEocd64LocatorSig = 0x07064b50;
constexpr uint64_t kLocalSize = 30, kCentralSize = 46, kEocdSize = 22;
constexpr uint64_t kEocd64Size = 56, kEocd64LocatorSize = 20;
constexpr uint16_t kZip64ExtraId = 0x0001;

// Bounds-checked little-endian reads over [base, base + size).
class Bytes {
 public:
  Bytes(const uint8_t* base, uint64_t size, const std::string& where)
      : base_(base), size_(size), where_(where) {}
  void need(uint64_t offset, uint64_t len, const char* what) const {
    if (offset > size_ || len > size_ - offset)
      throw Error(where_, str_cat("truncated or corrupt zip: ", what, " at offset ", offset,
                                  " (+", len, " bytes) is past the end of the file (", size_,
                                  " bytes)"));
  }
  uint16_t u16(uint64_t off) const { return static_cast<uint16_t>(le(off, 2)); }
  uint32_t u32(uint64_t off) const { return static_cast<uint32_t>(le(off, 4)); }
  uint64_t u64(uint64_t off) const { return le(off, 8); }
  std::string str(uint64_t off, uint64_t len) const {
    need(off, len, "string");
    return std::string(reinterpret_cast<const char*>(base_ + off), len);
  }

 private:
  uint64_t le(uint64_t off, int n) const {
    need(off, n, "field");
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | base_[off + i];
    return v;
  }
  const uint8_t* base_;
  uint64_t size_;
  const std::string& where_;
};

struct Directory {
  uint64_t entries = 0, cd_size = 0, cd_offset = 0;
};

// Finds the end of central directory record (scanning back over a comment of up to 64 KiB)
// and, when a ZIP64 locator precedes it, takes the counts and offsets from the ZIP64 record.
Directory read_directory_end(const Bytes& b, uint64_t size, const std::string& where) {
  if (size < kEocdSize)
    throw Error(where, str_cat("not a zip file or truncated (", size, " bytes)"));
  uint64_t lowest = size - kEocdSize > 0xFFFF ? size - kEocdSize - 0xFFFF : 0;
  uint64_t eocd = size - kEocdSize;
  while (true) {
    if (b.u32(eocd) == kEocdSig && eocd + kEocdSize + b.u16(eocd + 20) == size) break;
    if (eocd == lowest)
      throw Error(where, "truncated or corrupt zip: end of central directory record not found");
    --eocd;
  }
  Directory d;
  d.entries = b.u16(eocd + 10);
  d.cd_size = b.u32(eocd + 12);
  d.cd_offset = b.u32(eocd + 16);
  if (b.u16(eocd + 4) != 0 || b.u16(eocd + 6) != 0)
    throw Error(where, "multi-disk zip archives are not supported");
  if (eocd >= kEocd64LocatorSize && b.u32(eocd - kEocd64LocatorSize) == kEocd64LocatorSig) {
    uint64_t rec = b.u64(eocd - kEocd64LocatorSize + 8);
    b.need(rec, kEocd64Size, "ZIP64 end of central directory");
    if (b.u32(rec) != kEocd64Sig)
      throw Error(where, "corrupt zip: bad ZIP64 end of central directory signature");
    d.entries = b.u64(rec + 32);
    d.cd_size = b.u64(rec + 40);
    d.cd_offset = b.u64(rec + 48);
  }
  b.need(d.cd_offset, d.cd_size, "central directory");
  if (d.entries > d.cd_size / kCentralSize)
    throw Error(where, str_cat("corrupt zip: ", d.entries, " entries cannot fit in a ",
                               d.cd_size, "-byte central directory"));
  return d;
}

// Applies the ZIP64 extended information extra field to the 32-bit values that overflowed.
void apply_zip64_extra(const Bytes& b, uint64_t extra, uint64_t extra_len, uint64_t& usize,
                       uint64_t& csize, uint64_t& offset, const std::string& where) {
  uint64_t pos = extra, end = extra + extra_len;
  while (pos + 4 <= end) {
    uint16_t id = b.u16(pos), len = b.u16(pos + 2);
    if (pos + 4 + len > end) throw Error(where, "corrupt zip: extra field overruns its header");
    if (id == kZip64ExtraId) {
      uint64_t p = pos + 4, q = pos + 4 + len;
      for (uint64_t* v : {&usize, &csize, &offset}) {
        if (*v != 0xFFFFFFFFu) continue;
        if (p + 8 > q) throw Error(where, "corrupt zip: ZIP64 extra field too short");
        *v = b.u64(p);
        p += 8;
      }
      return;
    }
    pos += 4 + len;
  }
}

}  // namespace


bool ZipReader::looks_like_zip(const uint8_t* data, size_t size) {
  return size >= 4 && data[0] == 'P' && data[1] == 'K' &&
         ((data[2] == 3 && data[3] == 4) || (data[2] == 5 && data[3] == 6));
}

ZipReader ZipReader::open(const std::string& path) {
  MappedFile file = map_file(path);
  ZipReader z;
  z.path_ = path;
  z.base_ = file.data;
  z.size_ = file.size;
  z.owner_ = file.owner;
  z.parse();
  return z;
}

ZipReader ZipReader::from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes,
                                 const std::string& name) {
  ZipReader z;
  z.path_ = name;
  z.base_ = bytes->data();
  z.size_ = bytes->size();
  z.owner_ = std::shared_ptr<const void>(bytes, bytes->data());
  z.parse();
  return z;
}

void ZipReader::parse() {
  Bytes b(base_, size_, path_);
  Directory d = read_directory_end(b, size_, path_);
  std::unordered_set<std::string> names;
  uint64_t pos = d.cd_offset, cd_end = d.cd_offset + d.cd_size;
  entries_.reserve(d.entries);
  for (uint64_t i = 0; i < d.entries; ++i) {
    if (pos + kCentralSize > cd_end || b.u32(pos) != kCentralSig)
      throw Error(path_, str_cat("corrupt zip: bad central directory header #", i));
    uint16_t flags = b.u16(pos + 8), method = b.u16(pos + 10);
    uint64_t crc = b.u32(pos + 16), csize = b.u32(pos + 20), usize = b.u32(pos + 24);
    uint64_t name_len = b.u16(pos + 28), extra_len = b.u16(pos + 30), comment_len = b.u16(pos + 32);
    uint64_t local = b.u32(pos + 42);
    if (pos + kCentralSize + name_len + extra_len + comment_len > cd_end)
      throw Error(path_, str_cat("corrupt zip: central directory header #", i, " overruns it"));
    ZipEntry e;
    e.name = b.str(pos + kCentralSize, name_len);
    apply_zip64_extra(b, pos + kCentralSize + name_len, extra_len, usize, csize, local, path_);
    const std::string where = path_ + ": entry '" + e.name + "'";
    if (flags & 1) throw Error(where, "encrypted zip entries are not supported");
    if (method != 0)
      throw Error(where, str_cat("compressed zip entry (method ", method,
                                 "); only stored (uncompressed) entries are supported, as "
                                 "written by torch.save"));
    if (csize != usize)
      throw Error(where, str_cat("corrupt zip: stored entry has compressed size ", csize,
                                 " != size ", usize));
    b.need(local, kLocalSize, "local file header");
    if (b.u32(local) != kLocalSig) throw Error(where, "corrupt zip: bad local header signature");
    uint64_t data = local + kLocalSize + b.u16(local + 26) + b.u16(local + 28);
    b.need(data, usize, "entry data");
    e.data_offset = data;
    e.size = usize;
    e.crc32 = static_cast<uint32_t>(crc);
    if (!names.insert(e.name).second) throw Error(where, "duplicate zip entry name");
    entries_.push_back(std::move(e));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  for (const ZipEntry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const ZipEntry* ZipReader::find_suffix(const std::string& suffix) const {
  const ZipEntry* found = nullptr;
  for (const ZipEntry& e : entries_) {
    if (e.name.size() < suffix.size() ||
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    if (found)
      throw Error(path_, str_cat("several zip entries end with '", suffix, "': '", found->name,
                                 "' and '", e.name, "'"));
    found = &e;
  }
  return found;
}

void ZipReader::check_crc(const ZipEntry& entry) const {
  if (entry.crc32 == 0) return;
  uint32_t actual = crc32(data(entry), entry.size);
  if (actual != entry.crc32)
    throw Error(path_ + ": entry '" + entry.name + "'",
                str_cat("CRC mismatch (file is corrupt): recorded ", entry.crc32, ", computed ",
                        actual));
}

std::string ZipReader::read(const ZipEntry& entry) const {
  check_crc(entry);
  return std::string(reinterpret_cast<const char*>(data(entry)), entry.size);
}

}  // namespace tinv
