// VAE key conversion tables (LDM `first_stage_model.*` and legacy diffusers -> diffusers 0.25).
// The LDM convention is defined by CompVis ldm/modules/diffusionmodules/model.py (Encoder,
// Decoder, ResnetBlock, AttnBlock); diffusers' scripts/convert_vae_pt_to_diffusers.py is the
// reference mapping.
#include "models/convert_vae.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "common/error.h"
#include "common/shape.h"

namespace tinv {
namespace {

std::vector<std::string> split(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(key.substr(start, dot - start));
  parts.push_back(key.substr(start));
  return parts;
}

bool is_leaf(const std::string& s) { return s == "weight" || s == "bias"; }

// Index in 0..limit-1 from a decimal key component, or -1.
int64_t parse_index(const std::string& s, int64_t limit) {
  if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  int64_t v = std::stoll(s);
  return v < limit ? v : -1;
}

const std::map<std::string, std::string>& ldm_attention_names() {
  static const std::map<std::string, std::string> kNames = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
  return kNames;
}

// One LDM key -> diffusers key; "" when the key is outside the table. `conv1x1` is set when the
// tensor is a 1x1-conv attention weight that diffusers stores as a Linear weight.
std::string convert_key(const std::vector<std::string>& p, int64_t n, bool* conv1x1) {
  const size_t m = p.size();
  const std::string& leaf = p.back();
  if (!is_leaf(leaf)) return "";
  if (m == 2 && (p[0] == "quant_conv" || p[0] == "post_quant_conv")) return p[0] + "." + leaf;
  if (m < 3 || (p[0] != "encoder" && p[0] != "decoder")) return "";
  const std::string side = p[0] + ".";
  const bool enc = p[0] == "encoder";
  // A resnet's parameter p[r].leaf
  auto resnet = [&](size_t r) -> std::string {
    if (m != r + 2) return "";
    if (p[r] == "norm1" || p[r] == "conv1" || p[r] == "norm2" || p[r] == "conv2") return p[r] + "." + leaf;
    if (p[r] == "nin_shortcut") return "conv_shortcut." + leaf;
    return "";
  };
  auto prefixed = [](const std::string& prefix, const std::string& tail) {
    return tail.empty() ? std::string() : prefix + tail;
  };
  if (m == 3 && (p[1] == "conv_in" || p[1] == "conv_out")) return side + p[1] + "." + leaf;
  if (m == 3 && p[1] == "norm_out") return side + "conv_norm_out." + leaf;
  if (p[1] == "mid" && m >= 4) {
    if (p[2] == "block_1") return prefixed(side + "mid_block.resnets.0.", resnet(3));
    if (p[2] == "block_2") return prefixed(side + "mid_block.resnets.1.", resnet(3));
    if (p[2] == "attn_1" && m == 5) {
      auto it = ldm_attention_names().find(p[3]);
      if (it == ldm_attention_names().end()) return "";
      *conv1x1 = p[3] != "norm" && leaf == "weight";
      return side + "mid_block.attentions.0." + it->second + "." + leaf;
    }
    return "";
  }
  if ((enc && p[1] == "down") || (!enc && p[1] == "up")) {
    int64_t i = m >= 5 ? parse_index(p[2], n) : -1;
    if (i < 0) return "";
    std::string block = enc ? side + str_cat("down_blocks.", i, ".") : side + str_cat("up_blocks.", n - 1 - i, ".");
    if (p[3] == "block") {
      int64_t j = parse_index(p[4], 1000);
      return j < 0 ? "" : prefixed(block + str_cat("resnets.", j, "."), resnet(5));
    }
    const char* sampler = enc ? "downsample" : "upsample";
    if (p[3] == sampler && m == 6 && p[4] == "conv")
      return block + (enc ? "downsamplers.0.conv." : "upsamplers.0.conv.") + leaf;
  }
  return "";
}

// Mid-attention tensors: 1x1-conv weight [C,C,1,1] -> [C,C]; vector [C,1,...] -> [C].
torch::Tensor squeeze_trailing(const torch::Tensor& t, int64_t keep_dims) {
  if (t.dim() <= keep_dims) return t;
  for (int64_t d = keep_dims; d < t.dim(); ++d)
    if (t.size(d) != 1) return t;  // left alone: the strict load reports the shape
  return t.reshape(t.sizes().slice(0, keep_dims));
}

}  // namespace

StateDict convert_ldm_vae(const StateDict& ldm, const VaeConfig& cfg, const std::string& source) {
  const int64_t n = static_cast<int64_t>(cfg.block_out_channels.size());
  StateDict out;
  for (const auto& [key, t] : ldm) {
    bool conv1x1 = false;
    std::string name = convert_key(split(key), n, &conv1x1);
    TINV_CHECK(!name.empty(), source, "unexpected VAE tensor '", key, "' (not an LDM AutoencoderKL key for ", n,
               " blocks)");
    TINV_CHECK(out.count(name) == 0, source, "VAE tensors map twice to '", name, "'");
    out.emplace(name, conv1x1 ? squeeze_trailing(t, 2) : t);
  }
  return out;
}

void normalize_diffusers_vae(StateDict& sd, const std::string& source) {
  static const std::map<std::string, std::string> kLegacy = {
      {"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"}, {"proj_attn", "to_out.0"}};
  StateDict out;
  for (auto& [key, t] : sd) {
    std::string name = key;
    torch::Tensor value = t;
    auto at = key.find("mid_block.attentions.");
    if (at != std::string::npos) {
      auto parts = split(key.substr(at));  // mid_block attentions N <module...> leaf
      if (parts.size() == 5) {
        if (auto it = kLegacy.find(parts[3]); it != kLegacy.end())
          name = key.substr(0, at) + "mid_block.attentions." + parts[2] + "." + it->second + "." + parts[4];
      }
      const bool linear_weight = parts.back() == "weight" && name.find(".group_norm.") == std::string::npos;
      value = squeeze_trailing(t, linear_weight ? 2 : 1);
    }
    TINV_CHECK(out.count(name) == 0, source, "tensor '", key, "' and another tensor both map to '", name,
               "' (legacy and current attention names mixed)");
    out.emplace(name, value);
  }
  sd = std::move(out);
}

VaeConfig infer_vae_config(const StateDict& ldm, const std::string& source, int64_t norm_num_groups) {
  // Size of dimension d of tensor `key`.
  auto dim = [&](const std::string& key, int64_t d) -> int64_t {
    auto it = ldm.find(key);
    TINV_CHECK(it != ldm.end(), source, "cannot infer the VAE config: missing tensor '", key, "'");
    TINV_CHECK(it->second.dim() > d, source, "tensor '", key, "' has shape ", shape_str(it->second.sizes().vec()),
               ", expected a conv weight");
    return it->second.size(d);
  };
  auto has = [&](const std::string& key) { return ldm.count(key) != 0; };
  VaeConfig c;
  c.norm_num_groups = norm_num_groups;
  c.in_channels = dim("encoder.conv_in.weight", 1);
  c.out_channels = dim("decoder.conv_out.weight", 0);
  c.latent_channels = dim("decoder.conv_in.weight", 1);
  c.block_out_channels.clear();
  for (int i = 0; has(str_cat("encoder.down.", i, ".block.0.conv1.weight")); ++i)
    c.block_out_channels.push_back(dim(str_cat("encoder.down.", i, ".block.0.conv1.weight"), 0));
  TINV_CHECK(!c.block_out_channels.empty(), source,
             "cannot infer the VAE config: missing tensor 'encoder.down.0.block.0.conv1.weight'");
  const size_t n = c.block_out_channels.size();
  c.layers_per_block = 0;
  while (has(str_cat("encoder.down.0.block.", c.layers_per_block, ".conv1.weight"))) ++c.layers_per_block;
  // The decoder must agree: n up blocks of layers_per_block + 1 resnets.
  TINV_CHECK(has(str_cat("decoder.up.", n - 1, ".block.", c.layers_per_block, ".conv1.weight")) &&
                 !has(str_cat("decoder.up.", n, ".block.0.conv1.weight")),
             source, "cannot infer the VAE config: the decoder does not have ", n, " up blocks of ",
             c.layers_per_block + 1, " resnets like the encoder implies");
  c.down_block_types.assign(n, "DownEncoderBlock2D");
  c.up_block_types.assign(n, "UpDecoderBlock2D");
  c.mid_block_add_attention = has("encoder.mid.attn_1.q.weight");
  c.use_quant_conv = has("quant_conv.weight");
  c.use_post_quant_conv = has("post_quant_conv.weight");
  c.validate(source.empty() ? "inferred VAE config" : source + " (inferred VAE config)");
  return c;
}

}  // namespace tinv
