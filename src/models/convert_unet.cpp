#include "models/convert_unet.h"

#include <torch/torch.h>

#include <map>
#include <numeric>
#include <set>

#include "common/error.h"
#include "common/shape.h"

namespace tinv {
namespace {

const char* kWhere = "LDM UNet";

std::string s(int64_t v) { return std::to_string(v); }

int64_t uniform_layers(const UNetConfig& cfg) {
  int64_t L = cfg.layers_per_block.at(0);
  for (int64_t l : cfg.layers_per_block)
    TINV_CHECK(l == L, kWhere, "LDM numbering needs the same layers_per_block for every block");
  return L;
}

const torch::Tensor* find(const StateDict& sd, const std::string& key) {
  auto it = sd.find(key);
  return it == sd.end() ? nullptr : &it->second;
}

const torch::Tensor& need(const StateDict& sd, const std::string& key) {
  const torch::Tensor* t = find(sd, key);
  TINV_CHECK(t, kWhere, "missing tensor '", key, "' (is this an LDM UNet state dict?)");
  return *t;
}

// Number of distinct `transformer_blocks.K.` under `prefix` (0 when there is no attention).
int64_t count_transformer_layers(const StateDict& sd, const std::string& prefix) {
  std::set<std::string> ks;
  std::string p = prefix + "transformer_blocks.";
  for (auto it = sd.lower_bound(p); it != sd.end() && it->first.compare(0, p.size(), p) == 0; ++it)
    ks.insert(it->first.substr(p.size(), it->first.find('.', p.size()) - p.size()));
  return static_cast<int64_t>(ks.size());
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& ldm_resnet_renames() {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
      {"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
      {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."}};
  return kRenames;
}

std::vector<LdmPrefix> ldm_unet_prefixes(const UNetConfig& cfg) {
  int64_t L = uniform_layers(cfg), n = cfg.num_blocks();
  std::vector<LdmPrefix> t = {{"time_embed.0.", "time_embedding.linear_1."},
                              {"time_embed.2.", "time_embedding.linear_2."},
                              {"input_blocks.0.0.", "conv_in."},
                              {"out.0.", "conv_norm_out."},
                              {"out.2.", "conv_out."}};
  if (cfg.text_time()) {  // SDXL (sgm): label_emb.0 = Sequential(Linear, SiLU, Linear)
    t.push_back({"label_emb.0.0.", "add_embedding.linear_1."});
    t.push_back({"label_emb.0.2.", "add_embedding.linear_2."});
  }
  for (int64_t i = 0; i < n; ++i) {
    std::string down = "down_blocks." + s(i) + ".";
    for (int64_t j = 0; j < L; ++j) {
      std::string in = "input_blocks." + s(i * (L + 1) + j + 1) + ".";
      t.push_back({in + "0.", down + "resnets." + s(j) + ".", true});
      if (cfg.down_has_attention(i)) t.push_back({in + "1.", down + "attentions." + s(j) + "."});
    }
    if (i < n - 1) t.push_back({"input_blocks." + s((i + 1) * (L + 1)) + ".0.op.", down + "downsamplers.0.conv."});
    std::string up = "up_blocks." + s(i) + ".";
    for (int64_t j = 0; j <= L; ++j) {
      std::string out = "output_blocks." + s(i * (L + 1) + j) + ".";
      t.push_back({out + "0.", up + "resnets." + s(j) + ".", true});
      if (cfg.up_has_attention(i)) t.push_back({out + "1.", up + "attentions." + s(j) + "."});
    }
    if (i < n - 1)
      t.push_back({"output_blocks." + s(i * (L + 1) + L) + "." + (cfg.up_has_attention(i) ? "2" : "1") + ".conv.",
                   up + "upsamplers.0.conv."});
  }
  if (!cfg.mid_block_type.empty()) {
    t.push_back({"middle_block.0.", "mid_block.resnets.0.", true});
    t.push_back({"middle_block.1.", "mid_block.attentions.0."});
    t.push_back({"middle_block.2.", "mid_block.resnets.1.", true});
  }
  return t;
}

StateDict convert_ldm_unet(const StateDict& ldm, const UNetConfig& cfg) {
  std::map<std::string, LdmPrefix> table;
  for (auto& p : ldm_unet_prefixes(cfg)) table.emplace(p.ldm, p);
  StateDict out;
  for (const auto& [key, tensor] : ldm) {
    // Longest table prefix of `key` (prefixes end at a dot).
    const LdmPrefix* match = nullptr;
    for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
      auto it = table.find(key.substr(0, dot + 1));
      if (it != table.end()) match = &it->second;
    }
    TINV_CHECK(match, kWhere, "tensor '", key, "' has no diffusers name for this UNet config");
    std::string rest = key.substr(match->ldm.size());
    if (match->resnet) {
      bool renamed = false;
      for (const auto& [from, to] : ldm_resnet_renames()) {
        if (rest.compare(0, from.size(), from) != 0) continue;
        rest = to + rest.substr(from.size());
        renamed = true;
        break;
      }
      TINV_CHECK(renamed, kWhere, "tensor '", key, "' is not a known resnet tensor");
    }
    std::string name = match->diffusers + rest;
    TINV_CHECK(out.emplace(name, tensor).second, kWhere, "two tensors map to '", name, "'");
  }
  return out;
}

namespace {

// The level structure from input_blocks: downsamplers sit at input_blocks.{(i+1)(L+1)}.0.op;
// without one, a single level. Returns {levels n, resnets per level L}.
std::pair<int64_t, int64_t> infer_levels(const StateDict& sd) {
  int64_t max_index = 0;
  std::vector<int64_t> ops;
  for (const auto& [key, t] : sd) {
    if (key.compare(0, 13, "input_blocks.") != 0) continue;
    int64_t k = std::stoll(key.substr(13, key.find('.', 13) - 13));
    max_index = std::max(max_index, k);
    if (key.find(".0.op.weight") == key.find('.', 13)) ops.push_back(k);
  }
  std::sort(ops.begin(), ops.end());
  int64_t L = ops.empty() ? max_index : ops[0] - 1;
  int64_t n = static_cast<int64_t>(ops.size()) + 1;
  TINV_CHECK(L >= 1 && max_index == n * L + (n - 1), kWhere, "cannot read the level structure from input_blocks (", n,
             " levels, max index ", max_index, ")");
  return {n, L};
}

// Per level: channels, block types, transformer depth and heads.
void infer_blocks(UNetConfig& c, const StateDict& sd, bool sd2, int64_t n, int64_t L) {
  c.block_out_channels.clear();
  c.down_block_types.clear();
  c.up_block_types.clear();
  c.transformer_layers_per_block.clear();
  c.num_attention_heads.clear();
  c.layers_per_block.assign(n, L);
  for (int64_t i = 0; i < n; ++i) {
    std::string first = "input_blocks." + s(i * (L + 1) + 1) + ".";
    int64_t ch = need(sd, first + "0.out_layers.3.weight").size(0);
    c.block_out_channels.push_back(ch);
    int64_t down_layers = count_transformer_layers(sd, first + "1.");
    c.down_block_types.push_back(down_layers ? "CrossAttnDownBlock2D" : "DownBlock2D");
    // Up block i has the channels of level n-1-i.
    int64_t up_layers = count_transformer_layers(sd, "output_blocks." + s(i * (L + 1)) + ".1.");
    c.up_block_types.push_back(up_layers ? "CrossAttnUpBlock2D" : "UpBlock2D");
    c.transformer_layers_per_block.push_back(down_layers);
    c.num_attention_heads.push_back(sd2 ? std::max<int64_t>(1, ch / 64) : 8);
  }
  // Levels without down attention take their layer count from the up path or the mid block.
  for (int64_t i = 0; i < n; ++i) {
    auto& tl = c.transformer_layers_per_block[i];
    if (tl == 0) tl = count_transformer_layers(sd, "output_blocks." + s((n - 1 - i) * (L + 1)) + ".1.");
    if (tl == 0 && i == n - 1) tl = count_transformer_layers(sd, "middle_block.1.");
    if (tl == 0) tl = 1;
  }
}

// SDXL's text_time added conditions, when label_emb is there.
void infer_text_time(UNetConfig& c, const StateDict& sd, int64_t pooled_dim) {
  const torch::Tensor* label = find(sd, "label_emb.0.0.weight");
  if (!label) return;
  TINV_CHECK(label->dim() == 2, kWhere, "label_emb.0.0.weight must be 2-D, got ", shape_str(label->sizes().vec()));
  c.addition_embed_type = "text_time";
  c.projection_class_embeddings_input_dim = label->size(1);
  if (pooled_dim > 0) {
    TINV_CHECK((label->size(1) - pooled_dim) % 6 == 0 && label->size(1) > pooled_dim, kWhere,
               "label_emb.0.0.weight takes ", label->size(1), " inputs, which is not the pooled width ", pooled_dim,
               " + 6 time-id features");
    c.addition_time_embed_dim = (label->size(1) - pooled_dim) / 6;
  }
  c.sample_size = 128;
}

}  // namespace

UNetConfig infer_unet_config(const StateDict& sd, bool sd2, int64_t pooled_dim) {
  UNetConfig c;
  const torch::Tensor conv_in = need(sd, "input_blocks.0.0.weight");  // [C0, in, k, k]
  c.in_channels = conv_in.size(1);
  c.conv_in_kernel = conv_in.size(2);
  const torch::Tensor conv_out = need(sd, "out.2.weight");  // [out, C0, k, k]
  c.out_channels = conv_out.size(0);
  c.conv_out_kernel = conv_out.size(2);
  const auto [n, L] = infer_levels(sd);
  infer_blocks(c, sd, sd2, n, L);
  c.cross_attention_dim = 0;
  c.mid_block_type = find(sd, "middle_block.1.norm.weight") ? "UNetMidBlock2DCrossAttn" : "";
  for (const auto& [key, t] : sd) {
    if (key.find(".attn2.to_k.weight") != std::string::npos) c.cross_attention_dim = t.size(1);
    if (key.find(".proj_in.weight") != std::string::npos) c.use_linear_projection = t.dim() == 2;
  }
  TINV_CHECK(c.cross_attention_dim > 0, kWhere, "no attn2.to_k weight: cannot read cross_attention_dim");
  int64_t temb = need(sd, "time_embed.0.weight").size(0);
  c.time_embedding_dim = temb == 4 * c.block_out_channels[0] ? 0 : temb;
  // Not in the weights: 32 groups (every SD checkpoint), or the largest count <= 32 dividing
  // every block width for unusual checkpoints.
  int64_t g = 0;
  for (int64_t ch : c.block_out_channels) g = std::gcd(g, ch);
  c.norm_num_groups = 32;
  while (g % c.norm_num_groups != 0) --c.norm_num_groups;
  c.upcast_attention = false;
  c.sample_size = sd2 ? 96 : 64;
  infer_text_time(c, sd, pooled_dim);
  c.validate(kWhere);
  return c;
}

}  // namespace tinv
