#include "io/safetensors.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"
#include "io/json_config.h"

namespace tinv {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

struct DtypeEntry {
  const char* name;
  torch::ScalarType type;
  size_t size;
};

// F8 variants are representable on libtorch 2.x only; they are recognised so that the error
// says "unsupported" rather than "unknown".
const DtypeEntry kDtypes[] = {
    {"BOOL", torch::kBool, 1},   {"U8", torch::kUInt8, 1},    {"I8", torch::kInt8, 1},  {"I16", torch::kInt16, 2},
    {"I32", torch::kInt32, 4},   {"I64", torch::kInt64, 8},   {"F16", torch::kHalf, 2}, {"BF16", torch::kBFloat16, 2},
    {"F32", torch::kFloat32, 4}, {"F64", torch::kFloat64, 8},
};
const char* kUnsupportedDtypes[] = {"U16",     "U32",       "U64",         "F8_E4M3",
                                    "F8_E5M2", "F8_E4M3FN", "F8_E5M2FNUZ", "F8_E4M3FNUZ"};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The header's JSON (bytes 8 .. 8 + n), with duplicate top-level names refused.
nlohmann::json parse_header_json(const std::string& where, const uint8_t* bytes, uint64_t n) {
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + n,
                                   [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
                                     if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
                                       std::string key = parsed.get<std::string>();
                                       if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
                                     }
                                     return true;
                                   });
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("header is not valid UTF-8 JSON: ") + e.what());
  }
  TINV_CHECK(duplicate.empty(), where, "duplicate tensor name '", duplicate, "' in header");
  TINV_CHECK(header.is_object(), where, "header is not a JSON object");
  return header;
}

void parse_metadata(const std::string& where, const nlohmann::json& m, std::map<std::string, std::string>& metadata) {
  TINV_CHECK(m.is_object(), where, "__metadata__ is not an object");
  for (auto it = m.begin(); it != m.end(); ++it) {
    TINV_CHECK(it->is_string(), where, "__metadata__ value '", it.key(), "' is not a string");
    metadata[it.key()] = it->get<std::string>();
  }
}

const DtypeEntry& entry_dtype(const std::string& tw, const std::string& dtype) {
  const DtypeEntry* dt = find_dtype(dtype);
  if (!dt) {
    for (const char* u : kUnsupportedDtypes) TINV_CHECK(dtype != u, tw, "dtype ", dtype, " is not supported");
    throw Error(tw, "unknown dtype '" + dtype + "'");
  }
  return *dt;
}

// The shape of an entry; returns its element count.
uint64_t entry_shape(const std::string& tw, const nlohmann::json& shape, std::vector<int64_t>& out) {
  uint64_t numel = 1;
  for (const auto& d : shape) {
    TINV_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), tw,
               "shape entries must be non-negative integers");
    uint64_t v = d.get<uint64_t>();
    TINV_CHECK(v < (1ull << 40), tw, "shape entry ", v, " is too large");
    out.push_back(static_cast<int64_t>(v));
    TINV_CHECK(v == 0 || numel <= (1ull << 50) / v, tw, "shape ", shape_str(out), " is too large");
    numel *= v;
  }
  return numel;
}

// One tensor entry {"dtype", "shape", "data_offsets"}; `tw` names file and tensor.
TensorInfo parse_entry(const std::string& tw, const nlohmann::json& e) {
  TINV_CHECK(e.is_object(), tw, "entry is not an object");
  TINV_CHECK(e.contains("dtype") && e["dtype"].is_string(), tw, "missing string field 'dtype'");
  TINV_CHECK(e.contains("shape") && e["shape"].is_array(), tw, "missing array field 'shape'");
  TINV_CHECK(e.contains("data_offsets") && e["data_offsets"].is_array() && e["data_offsets"].size() == 2, tw,
             "missing field 'data_offsets' [begin, end]");
  TensorInfo info;
  info.dtype = e["dtype"].get<std::string>();
  const DtypeEntry& dt = entry_dtype(tw, info.dtype);
  const uint64_t numel = entry_shape(tw, e["shape"], info.shape);
  for (const auto& o : e["data_offsets"])
    TINV_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), tw,
               "data_offsets must be non-negative integers");
  info.begin = e["data_offsets"][0].get<uint64_t>();
  info.end = e["data_offsets"][1].get<uint64_t>();
  TINV_CHECK(info.begin <= info.end, tw, "data_offsets [", info.begin, ", ", info.end, ") end before they begin");
  TINV_CHECK(info.end - info.begin == numel * dt.size, tw, "data_offsets [", info.begin, ", ", info.end, ") hold ",
             info.end - info.begin, " bytes but shape ", shape_str(info.shape), " of ", info.dtype, " needs ",
             numel * dt.size);
  return info;
}

// The tensors must tile the data buffer of `buffer` bytes exactly: from 0, no gaps or overlaps.
void check_ranges(const std::string& where, const std::map<std::string, TensorInfo>& infos, uint64_t buffer) {
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, info] : infos) ranges.push_back({info.begin, info.end, &name});
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t cursor = 0;
  for (const auto& r : ranges) {
    TINV_CHECK(r.begin >= cursor, where + ": tensor '" + *r.name + "'", "data_offsets [", r.begin, ", ", r.end,
               ") overlap the previous tensor (which ends at ", cursor, ")");
    TINV_CHECK(r.begin == cursor, where + ": tensor '" + *r.name + "'", "data_offsets [", r.begin, ", ", r.end,
               ") leave a gap after byte ", cursor);
    cursor = r.end;
  }
  TINV_CHECK(cursor == buffer, where, "data buffer is ", buffer, " bytes but the tensors cover ", cursor,
             cursor > buffer ? " (file truncated?)" : " (trailing bytes)");
}

// Parses the header and validates it against a file of `file_size` bytes.
void parse_header(const std::string& where, const uint8_t* bytes, uint64_t file_size,
                  std::map<std::string, TensorInfo>& infos, std::map<std::string, std::string>& metadata,
                  uint64_t& data_start) {
  TINV_CHECK(file_size >= 8, where, "file too short for a safetensors header (", file_size, " bytes)");
  uint64_t n = read_u64_le(bytes);
  TINV_CHECK(n <= kMaxHeaderBytes, where, "header length ", n, " exceeds the 100 MB limit");
  TINV_CHECK(n <= file_size - 8, where, "header length ", n, " runs past the end of the file (", file_size, " bytes)");
  TINV_CHECK(n >= 2, where, "header too short (", n, " bytes)");
  data_start = 8 + n;
  const nlohmann::json header = parse_header_json(where, bytes, n);
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      parse_metadata(where, *it, metadata);
    else
      infos.emplace(it.key(), parse_entry(where + ": tensor '" + it.key() + "'", *it));
  }
  check_ranges(where, infos, file_size - data_start);
}

}  // namespace

torch::ScalarType safetensors_dtype(const std::string& dtype, const std::string& where) {
  const DtypeEntry* d = find_dtype(dtype);
  TINV_CHECK(d, where, "unknown dtype '", dtype, "'");
  return d->type;
}

std::string safetensors_dtype_name(torch::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.type == dtype) return d.name;
  throw Error("safetensors", std::string("cannot store dtype ") + c10::toString(dtype));
}

SafeTensors SafeTensors::open(const std::string& path) {
  MappedFile file = map_file(path);
  SafeTensors f;
  f.path_ = path;
  uint64_t data_start = 0;
  parse_header(path, file.data, file.size, f.infos_, f.metadata_, data_start);
  f.data_ = file.data + data_start;
  f.mapping_ = file.owner;
  return f;
}

SafeTensors SafeTensors::from_buffer(std::shared_ptr<const std::vector<uint8_t>> bytes, const std::string& name) {
  SafeTensors f;
  f.path_ = name;
  uint64_t data_start = 0;
  parse_header(name, bytes->data(), bytes->size(), f.infos_, f.metadata_, data_start);
  f.data_ = bytes->data() + data_start;
  f.mapping_ = std::shared_ptr<const void>(bytes, bytes->data());
  return f;
}

std::vector<std::string> SafeTensors::keys() const {
  std::vector<std::string> k;
  for (const auto& [name, info] : infos_) k.push_back(name);
  return k;
}

const TensorInfo& SafeTensors::info(const std::string& name) const {
  auto it = infos_.find(name);
  TINV_CHECK(it != infos_.end(), path_, "no tensor named '", name, "'");
  return it->second;
}

torch::Tensor SafeTensors::view(const std::string& name) const {
  const TensorInfo& i = info(name);
  auto dtype = safetensors_dtype(i.dtype, path_);
  auto keep = mapping_;
  void* ptr = const_cast<uint8_t*>(data_ + i.begin);
  return torch::from_blob(
      ptr, i.shape, [keep](void*) mutable { keep.reset(); }, torch::TensorOptions().dtype(dtype));
}

torch::Tensor SafeTensors::get(const std::string& name, torch::ScalarType dtype) const {
  torch::Tensor v = view(name);
  if (torch::isFloatingType(dtype) && !torch::isFloatingType(v.scalar_type())) return v.clone();
  return v.to(dtype, /*non_blocking=*/false, /*copy=*/true);
}

StateDict SafeTensors::state_dict() const {
  StateDict sd;
  for (const auto& [name, info] : infos_) sd.emplace(name, view(name));
  return sd;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    TINV_CHECK(names.insert(name).second, path, "duplicate tensor name '", name, "'");
    TINV_CHECK(name != "__metadata__", path, "'__metadata__' is not a valid tensor name");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  uint8_t* p = out.data() + 8 + h.size();
  for (const auto& c : data) {
    size_t bytes = c.numel() * c.element_size();
    if (bytes) std::memcpy(p, c.data_ptr(), bytes);
    p += bytes;
  }
  write_file_atomically(path, out.data(), out.size());
}

StateDict load_state_dict_file(const std::string& path) {
  const std::string suffix = ".index.json";
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    nlohmann::json index = parse_json(read_text_file(path), path);
    TINV_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), path,
               "missing object 'weight_map'");
    std::map<std::string, SafeTensors> shards;
    StateDict sd;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      TINV_CHECK(it->is_string(), path, "weight_map entry '", it.key(), "' is not a file name");
      std::string shard = join_path(parent_dir(path), it->get<std::string>());
      auto s = shards.find(shard);
      if (s == shards.end()) s = shards.emplace(shard, SafeTensors::open(shard)).first;
      TINV_CHECK(s->second.contains(it.key()), shard, "tensor '", it.key(), "' listed in ", path, " is missing");
      sd[it.key()] = s->second.view(it.key());
    }
    return sd;
  }
  return SafeTensors::open(path).state_dict();
}

}  // namespace tinv
