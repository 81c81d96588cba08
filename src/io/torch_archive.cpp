#include "io/torch_archive.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "common/error.h"

namespace tinv {
namespace {

std::string first_line(const std::string& s) {
  size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// libtorch's message without its backtrace, first line only.
std::string brief(const c10::Error& e) { return first_line(e.what_without_backtrace()); }

// An in-memory archive; reads past the end return fewer bytes (libtorch then reports an error).
class BufferAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BufferAdapter(std::shared_ptr<const std::vector<uint8_t>> bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_->size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_->size()) return 0;
    n = std::min<uint64_t>(n, bytes_->size() - pos);
    std::memcpy(buf, bytes_->data() + pos, n);
    return n;
  }

 private:
  std::shared_ptr<const std::vector<uint8_t>> bytes_;
};

}  // namespace

bool looks_like_zip(const uint8_t* data, size_t size) {
  return size >= 4 && data[0] == 'P' && data[1] == 'K' &&
         ((data[2] == 3 && data[3] == 4) || (data[2] == 5 && data[3] == 6));
}

// ---------------------------------------------------------------------------------------------
// Reader

TorchArchiveReader TorchArchiveReader::open(const std::string& path) {
  try {
    return TorchArchiveReader(path, std::make_shared<caffe2::serialize::PyTorchStreamReader>(path));
  } catch (const c10::Error& e) {
    throw Error(path, "not a torch.save zip or truncated: " + brief(e));
  }
}

TorchArchiveReader TorchArchiveReader::from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes,
                                                   const std::string& name) {
  try {
    auto adapter = std::make_shared<BufferAdapter>(std::move(bytes));
    return TorchArchiveReader(name, std::make_shared<caffe2::serialize::PyTorchStreamReader>(adapter));
  } catch (const c10::Error& e) {
    throw Error(name, "not a torch.save zip or truncated: " + brief(e));
  }
}

std::vector<std::string> TorchArchiveReader::records() const {
  try {
    return reader_->getAllRecords();
  } catch (const c10::Error& e) {
    throw Error(path_, "corrupt torch.save zip: " + brief(e));
  }
}

bool TorchArchiveReader::has(const std::string& name) const {
  try {
    return reader_->hasRecord(name);
  } catch (const c10::Error& e) {
    throw Error(path_ + ": record '" + name + "'", "corrupt torch.save zip: " + brief(e));
  }
}

TorchRecord TorchArchiveReader::read(const std::string& name) const {
  const std::string where = path_ + ": record '" + name + "'";
  if (!has(name)) throw Error(where, "missing from the archive");
  try {
    // getRecord returns (DataPtr, size) in libtorch 1.13 and 2.x alike.
    auto [ptr, size] = reader_->getRecord(name);
    auto owner = std::make_shared<at::DataPtr>(std::move(ptr));
    TorchRecord r;
    r.data = static_cast<const uint8_t*>(owner->get());
    r.size = size;
    r.owner = std::move(owner);
    return r;
  } catch (const c10::Error& e) {
    throw Error(where, "cannot read (truncated or corrupt zip): " + brief(e));
  }
}

uint64_t TorchArchiveReader::offset(const std::string& name) const {
  if (!has(name)) throw Error(path_ + ": record '" + name + "'", "missing from the archive");
  try {
    return reader_->getRecordOffset(name);
  } catch (const c10::Error& e) {
    throw Error(path_ + ": record '" + name + "'", "corrupt torch.save zip: " + brief(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

TorchArchiveWriter::TorchArchiveWriter(std::string where)
    : where_(std::move(where)), out_(std::make_unique<std::vector<uint8_t>>()) {
  std::vector<uint8_t>* out = out_.get();
  // The writer-function constructor names the top folder "archive", as torch.save does (the
  // file-name constructor would name it after the file).
  writer_ = std::make_unique<caffe2::serialize::PyTorchStreamWriter>([out](const void* data, size_t n) -> size_t {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    if (n) out->insert(out->end(), p, p + n);
    return n;
  });
}

TorchArchiveWriter::~TorchArchiveWriter() {
  // ~PyTorchStreamWriter finalizes an unfinished archive and could throw from a destructor.
  if (writer_ && !writer_->finalized()) {
    try {
      writer_->writeEndOfFile();
    } catch (...) {
    }
  }
}

void TorchArchiveWriter::add(const std::string& name, const void* data, size_t size) {
  if (writer_->finalized()) throw Error(where_, "archive already finished");
  if (writer_->getAllWrittenRecords().count(name)) throw Error(where_, "record '" + name + "' written twice");
  try {
    writer_->writeRecord(name, data, size);
  } catch (const c10::Error& e) {
    throw Error(where_ + ": record '" + name + "'", "cannot write: " + brief(e));
  }
}

std::vector<uint8_t> TorchArchiveWriter::finish() {
  if (writer_->finalized()) throw Error(where_, "archive already finished");
  try {
    writer_->writeEndOfFile();
  } catch (const c10::Error& e) {
    throw Error(where_, "cannot finish the archive: " + brief(e));
  }
  return std::move(*out_);
}

}  // namespace tinv
