// The torch.save container: a zip of stored records under one top folder, read and written
// through libtorch's caffe2::serialize::PyTorchStreamReader / PyTorchStreamWriter (the code
// Python's torch.save and torch.load use). Record names are relative to the top folder.
//
//   auto ar = tinv::TorchArchiveReader::open("embedding.pt");
//   tinv::TorchRecord pkl = ar.read("data.pkl");       // pkl.data, pkl.size; kept alive by pkl
//
//   tinv::TorchArchiveWriter w("out.pt");              // "out.pt" only names errors
//   w.add("data.pkl", bytes.data(), bytes.size());     // stored as archive/data.pkl
//   std::vector<uint8_t> zip = w.finish();             // + archive/version, written by libtorch
//
// libtorch's c10::Errors (long, multi-line) become one-line tinv::Errors naming the file: a
// truncated or non-zip file -> "not a torch.save zip or truncated: <libtorch's first line>".
// libtorch lays out record data at multiples of 64 bytes and writes ZIP64 records; it does not
// check the records' CRCs when reading.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace caffe2::serialize {
class PyTorchStreamReader;
class PyTorchStreamWriter;
}  // namespace caffe2::serialize

namespace tinv {

// The bytes of one record; `owner` keeps them alive (copies share it).
struct TorchRecord {
  std::shared_ptr<const void> owner;
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::string str() const { return std::string(reinterpret_cast<const char*>(data), size); }
};

// True when the bytes start like a zip ("PK\3\4" local header, or "PK\5\6" for an empty zip).
bool looks_like_zip(const uint8_t* data, size_t size);

class TorchArchiveReader {
 public:
  // Reads the zip's directory (the file is read on demand, record by record).
  static TorchArchiveReader open(const std::string& path);
  // Over an in-memory archive; `name` is used in error messages.
  static TorchArchiveReader from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes, const std::string& name);

  const std::string& path() const { return path_; }
  std::vector<std::string> records() const;
  bool has(const std::string& name) const;
  // Throws tinv::Error naming the file and record when it is missing or cannot be read.
  TorchRecord read(const std::string& name) const;
  // Offset of the record's first byte in the file.
  uint64_t offset(const std::string& name) const;

 private:
  TorchArchiveReader(std::string path, std::shared_ptr<caffe2::serialize::PyTorchStreamReader> r)
      : path_(std::move(path)), reader_(std::move(r)) {}
  std::string path_;
  std::shared_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
};

// Builds an archive in memory under the top folder `archive` (as torch.save names it).
class TorchArchiveWriter {
 public:
  explicit TorchArchiveWriter(std::string where);
  ~TorchArchiveWriter();
  TorchArchiveWriter(const TorchArchiveWriter&) = delete;
  TorchArchiveWriter& operator=(const TorchArchiveWriter&) = delete;

  // Appends a stored record (a name may be used once).
  void add(const std::string& name, const void* data, size_t size);
  // Writes the `version` record and the directory; returns the whole archive.
  std::vector<uint8_t> finish();

 private:
  std::string where_;
  std::unique_ptr<std::vector<uint8_t>> out_;  // the writer function appends here
  std::unique_ptr<caffe2::serialize::PyTorchStreamWriter> writer_;
};

}  // namespace tinv
