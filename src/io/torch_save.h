// torch.save files: the container (io/torch_archive.h) around a pickle (io/pickle.h).
//
//   tinv::PickleValue v = tinv::load_torch_file("embedding.pt");
//   torch::Tensor t = v.find("string_to_param")->find("*")->tensor();
//
//   tinv::save_torch_file("out.pt", tinv::PickleValue::make_dict({{"w", tinv::PickleValue(t)}}));
//
// Reading: `<top>/data.pkl` is run through the restricted unpickler; each storage it names,
// ("storage", torch.<T>Storage, key, location, numel), is record `<top>/data/<key>`, which must
// hold exactly numel elements. A `byteorder` record other than "little" is refused, and so are
// legacy (pre-1.6, non-zip) torch.save files, with a clear message. Every failure is a one-line
// tinv::Error naming the file.
//
// Writing: `archive/data.pkl`, `archive/byteorder`, `archive/data/<i>` and `archive/version`
// (libtorch's writer adds it), records 64-byte aligned, so Python's
// `torch.load(path, weights_only=True)` reads it. Written atomically (temp file + rename).
#pragma once
#include <cstdint>
#include <string>

#include "io/pickle.h"

namespace tinv {

class TorchArchiveReader;

// Throws tinv::Error naming `path` on anything malformed or disallowed.
PickleValue load_torch_file(const std::string& path);
// Same as load_torch_file, over an opened archive.
PickleValue load_torch_archive(const TorchArchiveReader& archive);
// True for a pre-1.6 (non-zip) torch.save file, which load_torch_file refuses.
bool is_legacy_torch_file(const uint8_t* data, size_t size);

void save_torch_file(const std::string& path, const PickleValue& value);

}  // namespace tinv
