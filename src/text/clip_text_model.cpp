#include "text/clip_text_model.h"

#include <torch/torch.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "nn/attention_ops.h"

namespace tinv {
namespace {

constexpr const char* kWhere = "ClipTextModel";

torch::nn::LayerNorm layer_norm(int64_t d, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(eps));
}

}  // namespace

// ---- ClipTextConfig ------------------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_json(const JsonConfig& file) {
  // A full CLIPModel config.json nests the text tower under "text_config".
  JsonConfig cfg = file.has("text_config") ? file.sub("text_config") : file;
  ClipTextConfig c;
  c.vocab_size = cfg.get<int64_t>("vocab_size", c.vocab_size);
  c.hidden_size = cfg.get<int64_t>("hidden_size", c.hidden_size);
  c.intermediate_size = cfg.get<int64_t>("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = cfg.get<int64_t>("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = cfg.get<int64_t>("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = cfg.get<int64_t>("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = cfg.get<std::string>("hidden_act", c.hidden_act);
  c.layer_norm_eps = cfg.get<double>("layer_norm_eps", c.layer_norm_eps);
  c.bos_token_id = cfg.get<int64_t>("bos_token_id", c.bos_token_id);
  c.eos_token_id = cfg.get<int64_t>("eos_token_id", c.eos_token_id);
  c.pad_token_id = cfg.get<int64_t>("pad_token_id", c.pad_token_id);
  if (cfg.has("architectures")) {
    for (const auto& a : cfg.require<std::vector<std::string>>("architectures"))
      c.with_projection = c.with_projection || a == "CLIPTextModelWithProjection";
  }
  c.projection_dim = cfg.get<int64_t>("projection_dim", c.projection_dim);
  c.validate(cfg.source());
  return c;
}

void ClipTextConfig::validate(const std::string& source) const {
  auto positive = [&](const char* field, int64_t v) {
    TINV_CHECK(v >= 1, source, "field '", field, "' must be >= 1 (got ", v, ")");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("max_position_embeddings", max_position_embeddings);
  TINV_CHECK(hidden_size % num_attention_heads == 0, source, "field 'num_attention_heads' (", num_attention_heads,
             ") must divide 'hidden_size' (", hidden_size, ")");
  TINV_CHECK(hidden_act == "quick_gelu" || hidden_act == "gelu", source,
             "field 'hidden_act' must be \"quick_gelu\" or \"gelu\" (got \"", hidden_act, "\")");
  if (with_projection) positive("projection_dim", projection_dim);
  TINV_CHECK(layer_norm_eps > 0.0, source, "field 'layer_norm_eps' must be > 0 (got ", layer_norm_eps, ")");
}

ClipTextConfig ClipTextConfig::sd15() {
  ClipTextConfig c;
  c.hidden_size = 768;
  c.intermediate_size = 3072;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 12;
  c.hidden_act = "quick_gelu";
  c.pad_token_id = 49407;  // SD1 pads with <|endoftext|>
  return c;
}

ClipTextConfig ClipTextConfig::sd21() {
  ClipTextConfig c;
  c.hidden_size = 1024;
  c.intermediate_size = 4096;
  c.num_hidden_layers = 23;  // OpenCLIP ViT-H has 24; SD2 uses the penultimate output
  c.num_attention_heads = 16;
  c.hidden_act = "gelu";
  c.pad_token_id = 0;  // SD2 pads with "!"
  return c;
}

ClipTextConfig ClipTextConfig::sdxl_l() {
  ClipTextConfig c = sd15();
  return c;
}

ClipTextConfig ClipTextConfig::sdxl_g() {
  ClipTextConfig c;
  c.hidden_size = 1280;
  c.intermediate_size = 5120;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 20;
  c.hidden_act = "gelu";
  c.pad_token_id = 0;
  c.with_projection = true;
  c.projection_dim = 1280;
  return c;
}

// ---- Layers ----------------------------------------------------------------------------------

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden, int64_t heads) : heads_(heads) {
  q_proj_ = register_module("q_proj", torch::nn::Linear(hidden, hidden));
  k_proj_ = register_module("k_proj", torch::nn::Linear(hidden, hidden));
  v_proj_ = register_module("v_proj", torch::nn::Linear(hidden, hidden));
  out_proj_ = register_module("out_proj", torch::nn::Linear(hidden, hidden));
}

// Mirrors transformers CLIPAttention.forward with the causal mask (the scale is applied to the
// scores rather than to q, which is the same function).
torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  auto q = split_heads(q_proj_(x), heads_);  // [B, H, L, d]
  auto k = split_heads(k_proj_(x), heads_);  // [B, H, L, d]
  auto v = split_heads(v_proj_(x), heads_);  // [B, H, L, d]
  AttentionOptions opts;
  opts.causal = true;
  auto a = dot_product_attention(q, k, v, opts);  // [B, H, L, d]
  return out_proj_(merge_heads(a));               // [B, L, D]
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden, int64_t intermediate, std::string act) : act_(std::move(act)) {
  fc1_ = register_module("fc1", torch::nn::Linear(hidden, intermediate));
  fc2_ = register_module("fc2", torch::nn::Linear(intermediate, hidden));
}

// Mirrors transformers CLIPMLP.forward; ACT2FN["quick_gelu"] / ACT2FN["gelu"] (exact erf).
torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  auto h = fc1_(x);  // [B, L, I]
  h = act_ == "quick_gelu" ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2_(h);  // [B, L, D]
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& c) {
  self_attn_ = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1_ = register_module("layer_norm1", layer_norm(c.hidden_size, c.layer_norm_eps));
  mlp_ = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size, c.hidden_act));
  layer_norm2_ = register_module("layer_norm2", layer_norm(c.hidden_size, c.layer_norm_eps));
}

// Mirrors transformers CLIPEncoderLayer.forward (pre-LN residual blocks).
torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn_(layer_norm1_(x));  // [B, L, D]
  return h + mlp_(layer_norm2_(h));          // [B, L, D]
}

// ---- ClipTextModel ---------------------------------------------------------------------------

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  config_.validate(kWhere);
  const auto& c = config_;
  // Plain modules give the dotted HF key prefixes text_model.embeddings / text_model.encoder.
  auto text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  auto encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  token_embedding_ = embeddings->register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding_ =
      embeddings->register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
  layers_ = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers_->push_back(ClipEncoderLayer(c));
  final_layer_norm_ = text_model->register_module("final_layer_norm", layer_norm(c.hidden_size, c.layer_norm_eps));
  if (c.with_projection)
    text_projection_ = register_module(
        "text_projection", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.projection_dim).bias(false)));
  freeze(*this);
  eval();
}

// Mirrors transformers CLIPTextEmbeddings.forward, with ids >= vocab_size taken from
// `extra`. The frozen table and the extra rows are gathered separately and combined with
// torch::where, so autograd records only the extra rows' gather.
torch::Tensor ClipTextModelImpl::embed(const torch::Tensor& input_ids, const torch::Tensor& extra) {
  const auto& c = config_;
  TINV_CHECK(input_ids.dim() == 2, kWhere, "input_ids must be [batch, length], got ",
             shape_str(input_ids.sizes().vec()));
  TINV_CHECK(!input_ids.is_floating_point(), kWhere, "input_ids must be an integer tensor");
  const int64_t b = input_ids.size(0), len = input_ids.size(1), d = c.hidden_size;
  TINV_CHECK(len <= c.max_position_embeddings, kWhere, "sequence length ", len, " exceeds max_position_embeddings ",
             c.max_position_embeddings);
  const int64_t n = extra.defined() ? extra.size(0) : 0;
  if (extra.defined())
    TINV_CHECK(extra.dim() == 2 && extra.size(1) == d, kWhere, "extra_embeddings must be [n, ", d, "], got ",
               shape_str(extra.sizes().vec()));
  const auto& table = token_embedding_->weight;                         // [V, D]
  auto ids = input_ids.to(table.device(), torch::kLong).reshape({-1});  // [B*L]
  if (ids.numel() > 0) {
    int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    TINV_CHECK(lo >= 0 && hi < c.vocab_size + n, kWhere, "token id ", (lo < 0 ? lo : hi),
               " is out of range: the vocabulary has ", c.vocab_size, " ids and ", n,
               " extra embedding row(s) (valid ids 0..", c.vocab_size + n - 1, ")");
  }
  torch::Tensor tokens;  // [B*L, D]
  if (n == 0) {
    tokens = table.index_select(0, ids);
  } else {
    auto is_extra = (ids >= c.vocab_size).unsqueeze(1);                  // [B*L, 1]
    auto base = table.index_select(0, ids.clamp_max(c.vocab_size - 1));  // [B*L, D]
    auto rows =
        extra.to(table.device(), table.scalar_type()).index_select(0, (ids - c.vocab_size).clamp_min(0));  // [B*L, D]
    tokens = torch::where(is_extra, rows, base);
  }
  auto positions = position_embedding_->weight.narrow(0, 0, len);  // [L, D]
  return tokens.view({b, len, d}) + positions;                     // [B, L, D]
}

// Mirrors transformers CLIPTextTransformer.forward up to last_hidden_state (causal mask only).
torch::Tensor ClipTextModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& extra_embeddings) {
  auto h = embed(input_ids, extra_embeddings);  // [B, L, D]
  for (const auto& layer : *layers_) h = layer->as<ClipEncoderLayer>()->forward(h);
  return final_layer_norm_(h);  // [B, L, D]
}

// Mirrors transformers CLIPTextTransformer.forward with output_hidden_states (hidden_states[-2])
// and CLIPTextModelWithProjection (text_embeds = text_projection(pooled)). The pooled position
// is the first id equal to eos_token_id (transformers >= 4.32 with eos_token_id != 2), so added
// tokens (ids >= vocab_size) do not move it.
ClipTextOutputs ClipTextModelImpl::forward_all(const torch::Tensor& input_ids, const torch::Tensor& extra_embeddings) {
  ClipTextOutputs out;
  auto h = embed(input_ids, extra_embeddings);  // [B, L, D]
  const int64_t n = static_cast<int64_t>(layers_->size());
  for (int64_t i = 0; i < n; ++i) {
    if (i == n - 1) out.penultimate = h;
    h = layers_[i]->as<ClipEncoderLayer>()->forward(h);
  }
  out.last_hidden_state = final_layer_norm_(h);  // [B, L, D]
  auto ids = input_ids.to(h.device(), torch::kLong);
  auto eos_pos = (ids == config_.eos_token_id).to(torch::kInt).argmax(-1);  // [B] first EOS
  auto batch = torch::arange(ids.size(0), ids.options());
  out.pooled = out.last_hidden_state.index({batch, eos_pos});       // [B, D]
  if (text_projection_) out.pooled = text_projection_(out.pooled);  // [B, P]
  return out;
}

torch::Tensor ClipTextModelImpl::token_embeddings(const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  const auto& table = token_embedding_->weight;
  auto flat = ids.to(table.device(), torch::kLong).reshape({-1});
  if (flat.numel() > 0) {
    int64_t lo = flat.min().item<int64_t>(), hi = flat.max().item<int64_t>();
    TINV_CHECK(lo >= 0 && hi < config_.vocab_size, kWhere, "token id ", (lo < 0 ? lo : hi),
               " is out of range for token_embeddings (vocabulary of ", config_.vocab_size, ")");
  }
  auto shape = ids.sizes().vec();
  shape.push_back(config_.hidden_size);
  return table.index_select(0, flat).view(shape);  // [..., D]
}

// ---- Loading ---------------------------------------------------------------------------------

void load_clip_text_weights(ClipTextModel& model, const StateDict& sd, const std::string& source) {
  load_state_dict(*model, sd, source, {"text_model.embeddings.position_ids"});
}

ClipTextModel load_clip_text_model(const std::string& folder) {
  auto config = ClipTextConfig::from_json(JsonConfig::load(join_path(folder, "config.json")));
  std::string weights;
  for (const char* name : {"model.safetensors", "model.fp16.safetensors", "model.safetensors.index.json",
                           "model.fp16.safetensors.index.json"}) {
    if (file_exists(join_path(folder, name))) {
      weights = join_path(folder, name);
      break;
    }
  }
  TINV_CHECK(
      !weights.empty(), folder,
      "no model.safetensors (nor model.fp16.safetensors or a .safetensors.index.json) in the text encoder folder");
  ClipTextModel model(config);
  load_clip_text_weights(model, load_state_dict_file(weights), weights);
  return model;
}

}  // namespace tinv
