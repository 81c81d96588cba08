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
#include "io/torch_archive.h"
#include "io/torch_save.h"

namespace tinv {
namespace {

constexpr int64_t kA1111Token = 265;  // the token id A1111 records for "*"
const char* const kA1111Reserved[] = {"string_to_token", "string_to_param",   "name", "step",
                                      "sd_checkpoint",   "sd_checkpoint_name"};

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
    throw Error(str_cat(what, " has dtype ", c10::toString(t.scalar_type()), "; expected floating point"));
  if (t.dim() != 1 && t.dim() != 2)
    throw Error(str_cat(what, " has shape ", shape_string(t), "; expected [n, d] or [d]"));
  torch::Tensor v = (t.dim() == 1 ? t.unsqueeze(0) : t).to(torch::kFloat32).contiguous().clone();
  if (v.size(0) == 0) throw Error(str_cat(what, " holds no vectors (shape ", shape_string(t), ")"));
  if (v.size(1) == 0) throw Error(str_cat(what, " has zero width (shape ", shape_string(t), ")"));
  if (!torch::isfinite(v).all().item<bool>()) throw Error(str_cat(what, " has NaN or infinite values"));
  int64_t d = v.size(1);
  if (expected_width > 0 && d != expected_width)
    throw Error(str_cat("embedding is ", d, " wide", width_label(d), " but the text encoder is ", expected_width,
                        " wide", width_label(expected_width), " (", what, ")"));
  return v;
}

// The two row sets of an SDXL embedding; each checked as a vectors tensor, then together.
Embedding sdxl_embedding(const std::string& trigger, const torch::Tensor* l, const torch::Tensor* g, int64_t width,
                         int64_t width_2, const char* name_l, const char* name_g) {
  if (!l || !g)
    throw Error(str_cat("SDXL embedding with '", l ? name_l : name_g, "' but no '", l ? name_g : name_l,
                        "': both encoders' rows are needed"));
  if (width > 0 && width_2 == 0)
    throw Error(str_cat("SDXL embedding (", name_l, ", ", name_g,
                        ") cannot be used with an SD1/SD2 model "
                        "(its text encoder is ",
                        width, " wide); load it with an SDXL model"));
  Embedding e;
  e.trigger = trigger;
  e.vectors = to_vectors(*l, name_l, width);
  e.vectors_2 = to_vectors(*g, name_g, width_2);
  if (e.vectors.size(0) != e.vectors_2.size(0))
    throw Error(str_cat("SDXL embedding has ", e.vectors.size(0), " ", name_l, " rows but ", e.vectors_2.size(0), " ",
                        name_g, " rows"));
  e.format = "sdxl";
  return e;
}

// An SD1/SD2 embedding on an SDXL model.
void refuse_single(int64_t width, int64_t width_2, const torch::Tensor& t) {
  if (width_2 <= 0) return;
  throw Error(str_cat("SD1/SD2 embedding (one ", shape_string(t),
                      " tensor) cannot be used with an SDXL model, "
                      "which needs clip_l [n, ",
                      width, "] and clip_g [n, ", width_2, "]"));
}

std::vector<Embedding> load_safetensors_embeddings(const std::string& path, int64_t width, int64_t width_2) {
  SafeTensors file = SafeTensors::open(path);
  std::vector<Embedding> out;
  if (file.contains("clip_l") || file.contains("clip_g")) {
    torch::Tensor l, g;
    if (file.contains("clip_l")) l = file.view("clip_l");
    if (file.contains("clip_g")) g = file.view("clip_g");
    out.push_back(sdxl_embedding(file_stem(path), l.defined() ? &l : nullptr, g.defined() ? &g : nullptr, width,
                                 width_2, "clip_l", "clip_g"));
    out.back().metadata = file.metadata();
    return out;
  }
  // width_2 < 0: a pair is expected (a learned_embeds folder) without a model to check against.
  if (width_2 != 0 && file.keys().size() >= 1 && !file.contains("emb_params") &&
      file_exists(pair_path(path))) {  // diffusers pair: X.safetensors + X_2.safetensors
    SafeTensors second = SafeTensors::open(pair_path(path));
    for (const std::string& key : file.keys()) {
      if (!second.contains(key)) throw Error(str_cat("tensor '", key, "' has no counterpart in ", pair_path(path)));
      torch::Tensor l = file.view(key), g = second.view(key);
      out.push_back(sdxl_embedding(key, &l, &g, width, width_2, key.c_str(), (pair_path(path) + ":" + key).c_str()));
      out.back().format = "diffusers_pair";
      out.back().metadata = file.metadata();
    }
    return out;
  }
  if (file.contains("emb_params")) {  // kohya / A1111 safetensors: one trigger, the file stem
    refuse_single(width, width_2, file.view("emb_params"));
    out.push_back(
        {file_stem(path), to_vectors(file.view("emb_params"), "emb_params", width), file.metadata(), "kohya"});
    return out;
  }
  for (const std::string& key : file.keys()) {  // diffusers: {trigger: [n,d] or [d]}
    refuse_single(width, width_2, file.view(key));
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
    throw Error(
        str_cat("'", name, "' is a ", v ? pickle_kind_name(v->kind()) : "missing value", ", expected a tensor"));
  return *v;
}

std::vector<Embedding> load_torch_embeddings(const std::string& path, int64_t width, int64_t width_2) {
  PickleValue root = load_torch_file(path);
  if (!root.is_dict())
    throw Error(str_cat("expected a dict at the top of the pickle, got a ", pickle_kind_name(root.kind())));
  std::vector<Embedding> out;
  if (const PickleValue* params = root.find("string_to_param")) {  // A1111
    if (!params->is_dict() || params->dict().size() == 0)
      throw Error("A1111 embedding: string_to_param is not a non-empty dict");
    const PickleValue* star = params->find("*");
    if (!star) star = &params->dict().items().front().second;
    if (star->is_tensor()) refuse_single(width, width_2, star->tensor());
    out.push_back({file_stem(path),
                   to_vectors(tensor_value(star, "string_to_param.*").tensor(), "string_to_param.*", width),
                   a1111_metadata(root.dict()), "a1111"});
    return out;
  }
  if (root.find("clip_l") || root.find("clip_g")) {
    const PickleValue* l = root.find("clip_l");
    const PickleValue* g = root.find("clip_g");
    torch::Tensor tl, tg;
    if (l) tl = tensor_value(l, "clip_l").tensor();
    if (g) tg = tensor_value(g, "clip_g").tensor();
    out.push_back(
        sdxl_embedding(file_stem(path), l ? &tl : nullptr, g ? &tg : nullptr, width, width_2, "clip_l", "clip_g"));
    return out;
  }
  if (const PickleValue* emb = root.find("emb_params")) {
    if (emb->is_tensor()) refuse_single(width, width_2, emb->tensor());
    out.push_back(
        {file_stem(path), to_vectors(tensor_value(emb, "emb_params").tensor(), "emb_params", width), {}, "kohya"});
    return out;
  }
  for (const auto& [key, value] : root.dict().items()) {  // diffusers .bin {trigger: tensor}
    if (key.kind() != PickleValue::Kind::String || !value.is_tensor()) continue;
    refuse_single(width, width_2, value.tensor());
    out.push_back({key.string(), to_vectors(value.tensor(), key.string(), width), {}, "diffusers"});
  }
  if (out.empty())
    throw Error(
        "no embedding found: expected string_to_param (A1111), emb_params (kohya) or "
        "{trigger: tensor} (diffusers)");
  return out;
}

// Reads the first bytes and the size of the file.
std::vector<uint8_t> read_head(const std::string& path, uint64_t& file_size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
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

std::string pair_path(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return path.substr(0, path.size() - ext.size()) + "_2" + ext;
  return path + "_2";
}

std::vector<Embedding> load_embeddings(const std::string& path, int64_t expected_width, int64_t expected_width_2) {
  if (dir_exists(path)) {  // diffusers textual_inversion_sdxl.py output folder
    const std::string first = join_path(path, "learned_embeds.safetensors");
    TINV_CHECK(file_exists(first) && file_exists(pair_path(first)), path,
               "folder without learned_embeds.safetensors and learned_embeds_2.safetensors");
    TINV_CHECK(expected_width_2 > 0 || expected_width == 0, path,
               "a diffusers SDXL pair (learned_embeds, "
               "learned_embeds_2) cannot be used with an SD1/SD2 model");
    return load_embeddings(first, expected_width, expected_width_2 > 0 ? expected_width_2 : -1);
  }
  uint64_t size = 0;
  std::vector<uint8_t> head = read_head(path, size);
  try {
    if (size == 0) throw Error("empty file");
    if (looks_like_zip(head.data(), head.size()) || is_legacy_torch_file(head.data(), head.size()))
      return load_torch_embeddings(path, expected_width, expected_width_2);
    if (looks_like_safetensors(head)) return load_safetensors_embeddings(path, expected_width, expected_width_2);
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
    case EmbeddingFormat::Kohya: save_safetensors(path, {{"emb_params", v}}, metadata); return;
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
    if (used == 0 || used != s->size()) throw Error(path, "metadata 'step' must be an integer, got '" + *s + "'");
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

namespace {

// Both SDXL row sets checked together before anything is written.
std::pair<torch::Tensor, torch::Tensor> checked_pair(const std::string& path, const torch::Tensor& l,
                                                     const torch::Tensor& g) {
  if (!l.defined() || !g.defined())
    throw Error(path, str_cat("SDXL embedding without its ", l.defined() ? "clip_g" : "clip_l",
                              " rows: both encoders' tensors are needed, nothing written"));
  try {
    auto vl = to_vectors(l.detach().to(torch::kCPU), "clip_l", 0);
    auto vg = to_vectors(g.detach().to(torch::kCPU), "clip_g", 0);
    if (vl.size(0) != vg.size(0))
      throw Error(str_cat("clip_l has ", vl.size(0), " rows but clip_g ", vg.size(0), "; nothing written"));
    return {vl, vg};
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    throw Error(path, msg);
  }
}

}  // namespace

void save_sdxl_embedding(const std::string& path, const torch::Tensor& clip_l, const torch::Tensor& clip_g,
                         const std::map<std::string, std::string>& metadata) {
  auto [l, g] = checked_pair(path, clip_l, clip_g);
  save_safetensors(path, {{"clip_g", g}, {"clip_l", l}}, metadata);
}

void save_diffusers_pair(const std::string& path, const std::string& trigger, const torch::Tensor& clip_l,
                         const torch::Tensor& clip_g, const std::map<std::string, std::string>& metadata) {
  if (trigger.empty()) throw Error(path, "empty trigger word");
  if (trigger == "emb_params" || trigger == "clip_l" || trigger == "clip_g")
    throw Error(path, "trigger '" + trigger + "' would be read back as a kohya/SDXL key");
  auto [l, g] = checked_pair(path, clip_l, clip_g);
  save_safetensors(path, {{trigger, l}}, metadata);
  save_safetensors(pair_path(path), {{trigger, g}}, metadata);
}

EmbeddingFormat parse_embedding_format(const std::string& name) {
  std::string n = name;
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "diffusers") return EmbeddingFormat::Diffusers;
  if (n == "a1111") return EmbeddingFormat::A1111;
  if (n == "kohya") return EmbeddingFormat::Kohya;
  throw Error("--embedding-format", "unknown embedding format '" + name + "' (expected diffusers, a1111 or kohya)");
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
