#include "models/convert_text.h"

#include <torch/torch.h>

#include <cctype>

#include "common/error.h"
#include "common/shape.h"
#include "io/state_dict.h"

namespace tinv {
namespace {

constexpr const char* kWhere = "single-file text encoder";
const std::string kBlocks = "transformer.resblocks.";
const std::string kLayers = "text_model.encoder.layers.";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// "12.attn.out_proj.weight" -> {12, "attn.out_proj.weight"}; index -1 if it does not parse.
std::pair<int64_t, std::string> split_index(const std::string& s) {
  size_t dot = s.find('.');
  if (dot == 0 || dot == std::string::npos) return {-1, ""};
  for (size_t i = 0; i < dot; ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return {-1, ""};
  return {std::stoll(s.substr(0, dot)), s.substr(dot + 1)};
}

// Largest N + 1 over keys `<prefix>N.*` (0 if none).
int64_t count_indexed(const StateDict& sd, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& kv : sd)
    if (starts_with(kv.first, prefix)) n = std::max(n, split_index(kv.first.substr(prefix.size())).first + 1);
  return n;
}

// OpenCLIP (open_clip/transformer.py TextTransformer) -> transformers CLIPTextModel names.
const std::map<std::string, std::string>& openclip_top_names() {
  static const std::map<std::string, std::string> k = {
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"},
  };
  return k;
}

const std::map<std::string, std::string>& openclip_block_names() {
  static const std::map<std::string, std::string> k = {
      {"attn.out_proj.weight", "self_attn.out_proj.weight"},
      {"attn.out_proj.bias", "self_attn.out_proj.bias"},
      {"ln_1.weight", "layer_norm1.weight"},
      {"ln_1.bias", "layer_norm1.bias"},
      {"ln_2.weight", "layer_norm2.weight"},
      {"ln_2.bias", "layer_norm2.bias"},
      {"mlp.c_fc.weight", "mlp.fc1.weight"},
      {"mlp.c_fc.bias", "mlp.fc1.bias"},
      {"mlp.c_proj.weight", "mlp.fc2.weight"},
      {"mlp.c_proj.bias", "mlp.fc2.bias"},
  };
  return k;
}

// in_proj_{weight,bias} [3D, ...] -> q_proj, k_proj, v_proj (nn.MultiheadAttention packs q|k|v).
void split_in_proj(const std::string& key, const torch::Tensor& t, const std::string& layer, const std::string& suffix,
                   StateDict& out) {
  TINV_CHECK(t.dim() >= 1 && t.size(0) % 3 == 0, kWhere, "tensor '", key, "' has shape ", shape_str(t.sizes().vec()),
             "; its first dim must be 3 x hidden (q|k|v)");
  auto parts = t.chunk(3, 0);
  out[layer + "self_attn.q_proj." + suffix] = parts[0];
  out[layer + "self_attn.k_proj." + suffix] = parts[1];
  out[layer + "self_attn.v_proj." + suffix] = parts[2];
}

}  // namespace

StateDict convert_ldm_clip_text(const StateDict& single_file, const std::string& prefix) {
  StateDict out;
  for (const auto& [name, t] : strip_prefix(single_file, prefix)) {
    std::string key = starts_with(name, "text_model.") ? name : "text_model." + name;
    if (ends_with(key, "embeddings.position_ids")) continue;  // int64 buffer, not a weight
    out.emplace(key, t);
  }
  TINV_CHECK(!out.empty(), kWhere, "no tensor starts with '", prefix, "' (not an SD1 checkpoint?)");
  return out;
}

int64_t count_openclip_blocks(const StateDict& single_file, const std::string& prefix) {
  return count_indexed(single_file, prefix + kBlocks);
}

StateDict convert_openclip_text(const StateDict& single_file, int64_t num_layers, const std::string& prefix,
                                bool with_projection) {
  StateDict src = strip_prefix(single_file, prefix);
  TINV_CHECK(!src.empty(), kWhere, "no tensor starts with '", prefix, "' (not an OpenCLIP text encoder?)");
  const int64_t blocks = count_indexed(src, kBlocks);
  if (num_layers < 0) num_layers = blocks;
  TINV_CHECK(num_layers <= blocks, kWhere, "asked for ", num_layers, " layers but the file has ", blocks,
             " transformer.resblocks");
  StateDict out;
  for (const auto& [name, t] : src) {
    const std::string key = prefix + name;
    if (auto it = openclip_top_names().find(name); it != openclip_top_names().end()) {
      out[it->second] = t;
      continue;
    }
    if (name == "text_projection" && with_projection) {  // x @ P  ==  Linear with weight P^T
      TINV_CHECK(t.dim() == 2, kWhere, "tensor '", key, "' has shape ", shape_str(t.sizes().vec()),
                 "; expected [hidden, projection]");
      out["text_projection.weight"] = t.t().contiguous();
      continue;
    }
    if (!starts_with(name, kBlocks)) continue;  // text_projection, logit_scale, attn_mask, visual.*
    auto [index, rest] = split_index(name.substr(kBlocks.size()));
    TINV_CHECK(index >= 0, kWhere, "cannot read the block index of '", key, "'");
    if (index >= num_layers) continue;  // SD2 uses the penultimate block's output
    const std::string layer = kLayers + std::to_string(index) + ".";
    if (rest == "attn.in_proj_weight") {
      split_in_proj(key, t, layer, "weight", out);
    } else if (rest == "attn.in_proj_bias") {
      split_in_proj(key, t, layer, "bias", out);
    } else if (auto b = openclip_block_names().find(rest); b != openclip_block_names().end()) {
      out[layer + b->second] = t;
    } else {
      throw Error(kWhere, "unknown OpenCLIP text tensor '" + key + "'");
    }
  }
  TINV_CHECK(!with_projection || out.count("text_projection.weight"), kWhere, "no '", prefix,
             "text_projection' tensor (the second SDXL text encoder needs its projection)");
  return out;
}

ClipTextConfig infer_clip_text_config(const StateDict& converted, const std::string& hidden_act) {
  const char* where = "text encoder config inference";
  auto need = [&](const std::string& key, int64_t dims) -> const torch::Tensor& {
    auto it = converted.find(key);
    TINV_CHECK(it != converted.end(), where, "missing tensor '", key, "'");
    TINV_CHECK(it->second.dim() == dims, where, "tensor '", key, "' has shape ", shape_str(it->second.sizes().vec()),
               ", expected ", dims, " dims");
    return it->second;
  };
  const auto& tok = need("text_model.embeddings.token_embedding.weight", 2);     // [V, D]
  const auto& pos = need("text_model.embeddings.position_embedding.weight", 2);  // [P, D]
  const auto& fc1 = need(kLayers + "0.mlp.fc1.weight", 2);                       // [I, D]
  ClipTextConfig c;
  c.vocab_size = tok.size(0);
  c.hidden_size = tok.size(1);
  c.max_position_embeddings = pos.size(0);
  c.intermediate_size = fc1.size(0);
  c.num_hidden_layers = count_indexed(converted, kLayers);
  TINV_CHECK(c.hidden_size % 64 == 0, where, "cannot infer the head count of a ", c.hidden_size,
             "-wide text encoder (CLIP uses 64-dim heads); supply its config.json");
  c.num_attention_heads = c.hidden_size / 64;
  c.hidden_act = !hidden_act.empty() ? hidden_act : (c.hidden_size == 768 ? "quick_gelu" : "gelu");
  if (auto it = converted.find("text_projection.weight"); it != converted.end()) {
    TINV_CHECK(it->second.dim() == 2 && it->second.size(1) == c.hidden_size, where, "text_projection.weight has shape ",
               shape_str(it->second.sizes().vec()), ", expected [P, ", c.hidden_size, "]");
    c.with_projection = true;
    c.projection_dim = it->second.size(0);
  }
  c.validate(where);
  return c;
}

}  // namespace tinv
