#include "io/embeddings.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/zip_reader.h"

namespace tinv {
namespace {

constexpr int64_t kA1111Token = 265;  // the token id A1111 records for "*"
const char* const kA1111Reserved[] = {"string_to_token", "string_to_param", "name", "step",
                                      "sd_checkpoint", "sd_checkpoint_name"};

std::string width_label(int64_t d) {
  switch (d) {
    case 768: return " (SD1)";
    case 1024: return " (SD2)";
    case 1280: return " (SDXL clip_g)";
    default: return "";
  }
}

std::string shape_string(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// [n, d] or [d] floating tensor -> [n, d] float32 contiguous copy; checks values and width.
torch::Tensor to_vectors(const torch::Tensor& t, const std::string& name, int64_t expected_width) {
  const std::string what = "tensor '" + name + "'";
  if (!torch::isFloatingType(t.scalar_type()))
    throw Error(str_cat(what, " has dtype ", c10::toString(t.scalar_type()),
                        "; expected floating point"));
  if (t.dim() != 1 && t.dim() != 2)
    throw Error(str_cat(what, " has shape ", shape_string(t), "; expected [n, d] or [d]"));
  torch::Tensor v = (t.dim() == 1 ? t.unsqueeze(0) : t).to(torch::kFloat32).contiguous().clone();
  if (v.size(0) == 0) throw Error(str_cat(what, " holds no vectors (shape ", shape_string(t), ")"));
  if (v.size(1) == 0) throw Error(str_cat(what, " has zero width (shape ", shape_string(t), ")"));
  if (!torch::isfinite(v).all().item<bool>())
    throw Error(str_cat(what, " has NaN or infinite values"));
  int64_t d = v.size(1);
  if (expected_width > 0 && d != expected_width)
    throw Error(str_cat("embedding is ", d, " wide", width_label(d), " but the text encoder is ",
                        expected_width, " wide", width_label(expected_width), " (", what, ")"));
  return v;
}

[[noreturn]] void refuse_sdxl() {
  throw Error("SDXL embedding ({clip_l, clip_g}): tinv supports SD1/SD2 text encoders");
}

std::vector<Embedding> load_safetensors_embeddings(const std::string& path, int64_t width) {
  SafeTensors file = SafeTensors::open(path);
  if (file.contains("clip_l") || file.contains("clip_g")) refuse_sdxl();
  std::vector<Embedding> out;
  if (file.contains("emb_params")) {  // kohya / A1111 safetensors: one trigger, the file stem
    out.push_back({file_stem(path), to_vectors(file.view("emb_params"), "emb_params", width),
                   file.metadata(), "kohya"});
    return out;
  }
  for (const std::string& key : file.keys()) {  // diffusers: {trigger: [n,d] or [d]}
    std::string trigger = key == "string_to_param.*" ? file_stem(path) : key;
    out.push_back({trigger, to_vectors(file.view(key), key, width), file.metadata(),
                   key == "string_to_param.*" ? "a1111" : "diffusers"});
  }
  if (out.empty()) throw Error("safetensors file holds no tensors");
  return out;
}

// Top-level scalars of an A1111 .pt (name, step, sd_checkpoint, ...) as strings.
std::map<std::string, std::string> a1111_metadata(const PickleDict& root) {
  std::map<std::string, std::string> meta;
  for (const auto& [key, value] : root.items()) {
    if (key.kind() != PickleValue::Kind::String) continue;
    const std::string& k = key.string();
    if (k == "string_to_token" || k == "string_to_param") continue;
    switch (value.kind()) {
      case PickleValue::Kind::String: meta[k] = value.string(); break;
      case PickleValue::Kind::Int: meta[k] = std::to_string(value.integer()); break;
      case PickleValue::Kind::Float: meta[k] = str_cat(value.number()); break;
      case PickleValue::Kind::Bool: meta[k] = value.boolean() ? "true" : "false"; break;
      default: break;
    }
  }
  return meta;
}

const PickleValue& tensor_value(const PickleValue* v, const std::string& name) {
  if (!v || !v->is_tensor())
    throw Error(str_cat("'", name, "' is a ", v ? pickle_kind_name(v->kind()) : "missing value",
                        ", expected a tensor"));
  return *v;
}

std::vector<Embedding> load_torch_embeddings(const std::string& path, int64_t width) {
  PickleValue root = load_torch_file(path);
  if (!root.is_dict())
    throw Error(str_cat("expected a dict at the top of the pickle, got a ",
                        pickle_kind_name(root.kind())));
  std::vector<Embedding> out;
  if (const PickleValue* params = root.find("string_to_param")) {  // A1111
    if (!params->is_dict() || params->dict().size() == 0)
      throw Error("A1111 embedding: string_to_param is not a non-empty dict");
    const PickleValue* star = params->find("*");
    if (!star) star = &params->dict().items().front().second;
    out.push_back({file_stem(path),
                   to_vectors(tensor_value(star, "string_to_param.*").tensor(),
                              "string_to_param.*", width),
                   a1111_metadata(root.dict()), "a1111"});
    return out;
  }
  if (root.find("clip_l") || root.find("clip_g")) refuse_sdxl();
  if (const PickleValue* emb = root.find("emb_params")) {
    out.push_back({file_stem(path),
                   to_vectors(tensor_value(emb, "emb_params").tensor(), "emb_params", width),
                   {}, "kohya"});
    return out;
  }
  for (const auto& [key, value] : root.dict().items()) {  // diffusers .bin {trigger: tensor}
    if (key.kind() != PickleValue::Kind::String || !value.is_tensor()) continue;
    out.push_back({key.string(), to_vectors(value.tensor(), key.string(), width), {},
                   "diffusers"});
  }
  if (out.empty())
    throw Error("no embedding found: expected string_to_param (A1111), emb_params (kohya) or "
                "{trigger: tensor} (diffusers)");
  return out;
}

// Reads the first bytes and the size of the file.
std::vector<uint8_t> read_head(const std::string& path, uint64_t& file_size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(path, "not a regular file");
  file_size = static_cast<uint64_t>(st.st_size);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> head(16);
  in.read(reinterpret_cast<char*>(head.data()), head.size());
  head.resize(static_cast<size_t>(in.gcount()));
  return head;
}

bool looks_like_safetensors(const std::vector<uint8_t>& head) {
  if (head.size() < 9) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | head[i];
  // Header length plausible (SafeTensors::open reports a truncated file precisely).
  return head[8] == '{' && n >= 2 && n <= (uint64_t(100) << 20);
}

std::string one_line(std::string s) {
  size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

std::vector<Embedding> load_embeddings(const std::string& path, int64_t expected_width) {
  uint64_t size = 0;
  std::vector<uint8_t> head = read_head(path, size);
  try {
    if (size == 0) throw Error("empty file");
    if (ZipReader::looks_like_zip(head.data(), head.size()) ||
        is_legacy_torch_file(head.data(), head.size()))
      return load_torch_embeddings(path, expected_width);
    if (looks_like_safetensors(head)) return load_safetensors_embeddings(path, expected_width);
    throw Error("unrecognized embedding file: neither safetensors nor a torch .pt/.bin zip");
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;  // already names the file
    throw Error(path, one_line(msg));
  } catch (const c10::Error& e) {
    throw Error(path, one_line(e.what_without_backtrace()));
  }
}

void save_embedding(const std::string& path, EmbeddingFormat format, const std::string& trigger,
                    const torch::Tensor& vectors, const std::map<std::string, std::string>& metadata) {
  if (trigger.empty()) throw Error(path, "empty trigger word");
  if (!vectors.defined()) throw Error(path, "undefined embedding tensor");
  torch::Tensor v;
  try {
    v = to_vectors(vectors.detach().to(torch::kCPU), trigger, 0);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
  switch (format) {
    case EmbeddingFormat::Diffusers:
      if (trigger == "emb_params" || trigger == "clip_l" || trigger == "clip_g")
        throw Error(path, "trigger '" + trigger + "' would be read back as a kohya/SDXL key");
      save_safetensors(path, {{trigger, v}}, metadata);
      return;
    case EmbeddingFormat::Kohya:
      save_safetensors(path, {{"emb_params", v}}, metadata);
      return;
    case EmbeddingFormat::A1111: break;
  }
  auto get = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  int64_t step = 0;
  if (const std::string* s = get("step")) {
    size_t used = 0;
    try {
      step = std::stoll(*s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s->size())
      throw Error(path, "metadata 'step' must be an integer, got '" + *s + "'");
  }
  const std::string* checkpoint = get("sd_checkpoint");
  const std::string* checkpoint_name = get("sd_checkpoint_name");
  PickleValue root = PickleValue::make_dict({
      {"string_to_token", PickleValue::make_dict({{"*", PickleValue(kA1111Token)}})},
      {"string_to_param", PickleValue::make_dict({{"*", PickleValue(v)}})},
      {"name", PickleValue(trigger)},
      {"step", PickleValue(step)},
      {"sd_checkpoint", checkpoint ? PickleValue(*checkpoint) : PickleValue()},
      {"sd_checkpoint_name", PickleValue(checkpoint_name ? *checkpoint_name : std::string())},
  });
  for (const auto& [key, value] : metadata) {
    bool reserved = false;
    for (const char* r : kA1111Reserved) reserved = reserved || key == r;
    if (!reserved) root.dict().set(PickleValue(key), PickleValue(value));
  }
  save_torch_file(path, root);
}

EmbeddingFormat parse_embedding_format(const std::string& name) {
  std::string n = name;
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "diffusers") return EmbeddingFormat::Diffusers;
  if (n == "a1111") return EmbeddingFormat::A1111;
  if (n == "kohya") return EmbeddingFormat::Kohya;
  throw Error("--embedding-format", "unknown embedding format '" + name +
                                        "' (expected diffusers, a1111 or kohya)");
}

const char* embedding_format_name(EmbeddingFormat format) {
  switch (format) {
    case EmbeddingFormat::Diffusers: return "diffusers";
    case EmbeddingFormat::A1111: return "a1111";
    case EmbeddingFormat::Kohya: return "kohya";
  }
  return "?";
}

}  // namespace tinv
