#include "models/blip.h"

#include <torch/torch.h>

#include "common/error.h"
#include "io/json_config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "nn/attention_ops.h"

namespace tinv {
namespace {

const char* const kActivations[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"};

void check_act(const std::string& act, const std::string& where) {
  for (const char* a : kActivations)
    if (act == a) return;
  throw Error(where, "field 'hidden_act' is '" + act + "', expected gelu, gelu_new, relu or silu");
}

void check_positive(int64_t v, const char* field, const std::string& where) {
  TINV_CHECK(v >= 1, where, "field '", field, "' must be >= 1 (got ", v, ")");
}

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

}  // namespace

// ---- configs ---------------------------------------------------------------------------

BlipVisionConfig BlipVisionConfig::base() { return {}; }

BlipVisionConfig BlipVisionConfig::large() {
  BlipVisionConfig c;
  c.hidden_size = 1024;
  c.intermediate_size = 4096;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 16;
  return c;
}

void BlipVisionConfig::validate(const std::string& where) const {
  check_positive(hidden_size, "hidden_size", where);
  check_positive(intermediate_size, "intermediate_size", where);
  check_positive(num_hidden_layers, "num_hidden_layers", where);
  check_positive(num_attention_heads, "num_attention_heads", where);
  check_positive(num_channels, "num_channels", where);
  check_positive(image_size, "image_size", where);
  check_positive(patch_size, "patch_size", where);
  TINV_CHECK(hidden_size % num_attention_heads == 0, where, "field 'hidden_size' (", hidden_size,
             ") is not a multiple of num_attention_heads (", num_attention_heads, ")");
  TINV_CHECK(image_size % patch_size == 0, where, "field 'image_size' (", image_size,
             ") is not a multiple of patch_size (", patch_size, ")");
  TINV_CHECK(layer_norm_eps > 0, where, "field 'layer_norm_eps' must be > 0");
  check_act(hidden_act, where);
}

BlipVisionConfig BlipVisionConfig::from_json(const JsonConfig& j) {
  BlipVisionConfig c;
  c.hidden_size = j.get<int64_t>("hidden_size", c.hidden_size);
  c.intermediate_size = j.get<int64_t>("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = j.get<int64_t>("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = j.get<int64_t>("num_attention_heads", c.num_attention_heads);
  c.num_channels = j.get<int64_t>("num_channels", c.num_channels);
  c.image_size = j.get<int64_t>("image_size", c.image_size);
  c.patch_size = j.get<int64_t>("patch_size", c.patch_size);
  c.hidden_act = j.get<std::string>("hidden_act", c.hidden_act);
  c.layer_norm_eps = j.get<double>("layer_norm_eps", c.layer_norm_eps);
  c.validate(j.source());
  return c;
}

BlipTextConfig BlipTextConfig::base() { return {}; }

BlipTextConfig BlipTextConfig::large() {
  BlipTextConfig c;
  c.encoder_hidden_size = 1024;
  return c;
}

void BlipTextConfig::validate(const std::string& where) const {
  check_positive(vocab_size, "vocab_size", where);
  check_positive(hidden_size, "hidden_size", where);
  check_positive(encoder_hidden_size, "encoder_hidden_size", where);
  check_positive(intermediate_size, "intermediate_size", where);
  check_positive(num_hidden_layers, "num_hidden_layers", where);
  check_positive(num_attention_heads, "num_attention_heads", where);
  check_positive(max_position_embeddings, "max_position_embeddings", where);
  TINV_CHECK(hidden_size % num_attention_heads == 0, where, "field 'hidden_size' (", hidden_size,
             ") is not a multiple of num_attention_heads (", num_attention_heads, ")");
  TINV_CHECK(layer_norm_eps > 0, where, "field 'layer_norm_eps' must be > 0");
  for (auto [v, name] : {std::pair{bos_token_id, "bos_token_id"}, std::pair{sep_token_id, "sep_token_id"},
                         std::pair{pad_token_id, "pad_token_id"}})
    TINV_CHECK(v >= 0 && v < vocab_size, where, "field '", name, "' (", v, ") is outside the vocabulary (", vocab_size,
               ")");
  check_act(hidden_act, where);
}

BlipTextConfig BlipTextConfig::from_json(const JsonConfig& j) {
  BlipTextConfig c;
  c.vocab_size = j.get<int64_t>("vocab_size", c.vocab_size);
  c.hidden_size = j.get<int64_t>("hidden_size", c.hidden_size);
  c.encoder_hidden_size = j.get<int64_t>("encoder_hidden_size", c.encoder_hidden_size);
  c.intermediate_size = j.get<int64_t>("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = j.get<int64_t>("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = j.get<int64_t>("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = j.get<int64_t>("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = j.get<std::string>("hidden_act", c.hidden_act);
  c.layer_norm_eps = j.get<double>("layer_norm_eps", c.layer_norm_eps);
  c.bos_token_id = j.get<int64_t>("bos_token_id", c.bos_token_id);
  c.sep_token_id = j.get<int64_t>("sep_token_id", c.sep_token_id);
  c.pad_token_id = j.get<int64_t>("pad_token_id", c.pad_token_id);
  c.validate(j.source());
  return c;
}

BlipConfig BlipConfig::base() { return {}; }
BlipConfig BlipConfig::large() { return {BlipVisionConfig::large(), BlipTextConfig::large()}; }

BlipConfig BlipConfig::load(const std::string& path) { return from_json(JsonConfig::load(path)); }

BlipConfig BlipConfig::from_json(const JsonConfig& j) {
  for (const char* part : {"vision_config", "text_config"})
    TINV_CHECK(j.has(part) && j.json()[part].is_object(), j.source(), "missing '", part,
               "' (not a BLIP captioning config)");
  BlipConfig c;
  c.vision = BlipVisionConfig::from_json(j.sub("vision_config"));
  c.text = BlipTextConfig::from_json(j.sub("text_config"));
  TINV_CHECK(c.text.encoder_hidden_size == c.vision.hidden_size, j.source(), "text_config.encoder_hidden_size (",
             c.text.encoder_hidden_size, ") differs from vision_config.hidden_size (", c.vision.hidden_size, ")");
  return c;
}

torch::Tensor blip_activation(const torch::Tensor& x, const std::string& name) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "relu") return torch::relu(x);
  if (name == "silu") return torch::silu(x);
  throw Error("blip", "unknown activation '" + name + "'");
}

// ---- vision ----------------------------------------------------------------------------

BlipVisionEmbeddingsImpl::BlipVisionEmbeddingsImpl(const BlipVisionConfig& cfg) {
  class_embedding = register_parameter("class_embedding", torch::randn({1, 1, cfg.hidden_size}) * 0.02);
  patch_embedding = register_module(
      "patch_embedding",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(cfg.num_channels, cfg.hidden_size, cfg.patch_size).stride(cfg.patch_size)));
  position_embedding =
      register_parameter("position_embedding", torch::randn({1, cfg.num_patches() + 1, cfg.hidden_size}) * 0.02);
}

// Mirrors HF BlipVisionEmbeddings.forward.
torch::Tensor BlipVisionEmbeddingsImpl::forward(const torch::Tensor& pixel_values) {
  auto patches = patch_embedding(pixel_values).flatten(2).transpose(1, 2);  // [B, P, D]
  auto cls = class_embedding.expand({patches.size(0), 1, -1});              // [B, 1, D]
  auto x = torch::cat({cls, patches}, 1);                                   // [B, 1+P, D]
  return x + position_embedding.narrow(1, 0, x.size(1));
}

BlipAttentionImpl::BlipAttentionImpl(const BlipVisionConfig& cfg) : heads(cfg.num_attention_heads) {
  qkv = register_module("qkv", torch::nn::Linear(cfg.hidden_size, 3 * cfg.hidden_size));
  projection = register_module("projection", torch::nn::Linear(cfg.hidden_size, cfg.hidden_size));
}

// Mirrors HF BlipAttention.forward (q|k|v split of the fused projection).
torch::Tensor BlipAttentionImpl::forward(const torch::Tensor& x) {
  auto b = x.size(0), n = x.size(1), d = x.size(2);
  auto qkv_ = qkv(x).reshape({b, n, 3, heads, d / heads}).permute({2, 0, 3, 1, 4});  // [3, B, H, N, d/H]
  auto out = dot_product_attention(qkv_[0], qkv_[1], qkv_[2]);                       // [B, H, N, d/H]
  return projection(merge_heads(out));                                               // [B, N, D]
}

BlipMLPImpl::BlipMLPImpl(const BlipVisionConfig& cfg) : act(cfg.hidden_act) {
  fc1 = register_module("fc1", torch::nn::Linear(cfg.hidden_size, cfg.intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(cfg.intermediate_size, cfg.hidden_size));
}

torch::Tensor BlipMLPImpl::forward(const torch::Tensor& x) { return fc2(blip_activation(fc1(x), act)); }

BlipEncoderLayerImpl::BlipEncoderLayerImpl(const BlipVisionConfig& cfg) {
  self_attn = register_module("self_attn", BlipAttention(cfg));
  layer_norm1 = register_module("layer_norm1", layer_norm(cfg.hidden_size, cfg.layer_norm_eps));
  mlp = register_module("mlp", BlipMLP(cfg));
  layer_norm2 = register_module("layer_norm2", layer_norm(cfg.hidden_size, cfg.layer_norm_eps));
}

// Mirrors HF BlipEncoderLayer.forward (pre-LN residual blocks).
torch::Tensor BlipEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn(layer_norm1(x));  // [B, N, D]
  return h + mlp(layer_norm2(h));
}

BlipVisionModelImpl::BlipVisionModelImpl(const BlipVisionConfig& cfg) : config(cfg) {
  embeddings = register_module("embeddings", BlipVisionEmbeddings(cfg));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(BlipEncoderLayer(cfg));
  post_layernorm = register_module("post_layernorm", layer_norm(cfg.hidden_size, cfg.layer_norm_eps));
}

// Mirrors HF BlipVisionModel.forward: last_hidden_state after post_layernorm (image_embeds).
torch::Tensor BlipVisionModelImpl::forward(const torch::Tensor& pixel_values) {
  TINV_CHECK(pixel_values.dim() == 4 && pixel_values.size(1) == config.num_channels &&
                 pixel_values.size(2) == config.image_size && pixel_values.size(3) == config.image_size,
             "blip vision", "pixel_values must be [B, ", config.num_channels, ", ", config.image_size, ", ",
             config.image_size, "], got ", pixel_values.sizes());
  auto x = embeddings(pixel_values);  // [B, 1+P, D]
  for (auto& layer : *layers) x = layer->as<BlipEncoderLayer>()->forward(x);
  return post_layernorm(x);
}

// ---- text ------------------------------------------------------------------------------

void BlipKVCache::reorder(const torch::Tensor& index) {
  for (auto* v : {&self_k, &self_v, &cross_k, &cross_v})
    for (auto& t : *v)
      if (t.defined()) t = t.index_select(0, index);
}

BlipTextSelfAttentionImpl::BlipTextSelfAttentionImpl(const BlipTextConfig& cfg, bool cross_)
    : heads(cfg.num_attention_heads), cross(cross_) {
  int64_t kv_in = cross ? cfg.encoder_hidden_size : cfg.hidden_size;
  query = register_module("query", torch::nn::Linear(cfg.hidden_size, cfg.hidden_size));
  key = register_module("key", torch::nn::Linear(kv_in, cfg.hidden_size));
  value = register_module("value", torch::nn::Linear(kv_in, cfg.hidden_size));
}

// Mirrors HF BlipTextSelfAttention.forward (absolute positions, causal mask for the decoder,
// past_key_value concatenation for self-attention, cached image keys for cross-attention).
torch::Tensor BlipTextSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                                 torch::Tensor* k_cache, torch::Tensor* v_cache) {
  auto q = split_heads(query(x), heads);  // [B, H, N, d]
  torch::Tensor k, v;
  AttentionOptions opts;
  if (cross) {
    if (k_cache && k_cache->defined()) {
      k = *k_cache, v = *v_cache;
    } else {
      k = split_heads(key(context), heads);  // [B, H, M, d]
      v = split_heads(value(context), heads);
    }
  } else {
    k = split_heads(key(x), heads);  // [B, H, N, d]
    v = split_heads(value(x), heads);
    if (k_cache && k_cache->defined()) {
      k = torch::cat({*k_cache, k}, 2);  // [B, H, T+N, d]
      v = torch::cat({*v_cache, v}, 2);
    }
    opts.causal = true;  // queries are the last N of the T+N positions
  }
  if (k_cache) *k_cache = k, *v_cache = v;
  return merge_heads(dot_product_attention(q, k, v, opts));  // [B, N, D]
}

BlipTextOutputImpl::BlipTextOutputImpl(int64_t in, int64_t out, double eps) {
  dense = register_module("dense", torch::nn::Linear(in, out));
  LayerNorm = register_module("LayerNorm", layer_norm(out, eps));
}

torch::Tensor BlipTextOutputImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return LayerNorm(dense(x) + residual);
}

BlipTextAttentionImpl::BlipTextAttentionImpl(const BlipTextConfig& cfg, bool cross) {
  self = register_module("self", BlipTextSelfAttention(cfg, cross));
  output = register_module("output", BlipTextOutput(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps));
}

torch::Tensor BlipTextAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                             torch::Tensor* k_cache, torch::Tensor* v_cache) {
  return output(self(x, context, k_cache, v_cache), x);
}

BlipTextLayerImpl::BlipTextLayerImpl(const BlipTextConfig& cfg) : act(cfg.hidden_act) {
  attention = register_module("attention", BlipTextAttention(cfg, false));
  crossattention = register_module("crossattention", BlipTextAttention(cfg, true));
  auto inter = register_module("intermediate", std::make_shared<torch::nn::Module>());
  intermediate = inter->register_module("dense", torch::nn::Linear(cfg.hidden_size, cfg.intermediate_size));
  output = register_module("output", BlipTextOutput(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps));
}

// Mirrors HF BlipTextLayer.forward (decoder mode: self-attention, cross-attention, FFN).
torch::Tensor BlipTextLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& image_embeds, BlipKVCache* cache,
                                         size_t i) {
  auto h = attention(x, torch::Tensor(), cache ? &cache->self_k[i] : nullptr, cache ? &cache->self_v[i] : nullptr);
  h = crossattention(h, image_embeds, cache ? &cache->cross_k[i] : nullptr, cache ? &cache->cross_v[i] : nullptr);
  return output(blip_activation(intermediate(h), act), h);  // [B, N, D]
}

BlipTextLMHeadModelImpl::BlipTextLMHeadModelImpl(const BlipTextConfig& cfg) : config(cfg) {
  auto bert = register_module("bert", std::make_shared<torch::nn::Module>());
  auto emb = bert->register_module("embeddings", std::make_shared<torch::nn::Module>());
  word_embeddings = emb->register_module("word_embeddings", torch::nn::Embedding(cfg.vocab_size, cfg.hidden_size));
  position_embeddings =
      emb->register_module("position_embeddings", torch::nn::Embedding(cfg.max_position_embeddings, cfg.hidden_size));
  embeddings_norm = emb->register_module("LayerNorm", layer_norm(cfg.hidden_size, cfg.layer_norm_eps));
  auto encoder = bert->register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(BlipTextLayer(cfg));
  auto cls = register_module("cls", std::make_shared<torch::nn::Module>());
  auto pred = cls->register_module("predictions", std::make_shared<torch::nn::Module>());
  auto transform = pred->register_module("transform", std::make_shared<torch::nn::Module>());
  transform_dense = transform->register_module("dense", torch::nn::Linear(cfg.hidden_size, cfg.hidden_size));
  transform_norm = transform->register_module("LayerNorm", layer_norm(cfg.hidden_size, cfg.layer_norm_eps));
  decoder = pred->register_module(
      "decoder", torch::nn::Linear(torch::nn::LinearOptions(cfg.hidden_size, cfg.vocab_size).bias(false)));
  bias = pred->register_parameter("bias", torch::zeros({cfg.vocab_size}));
}

// Mirrors HF BlipTextEmbeddings + BlipTextEncoder (is_decoder=True, use_cache).
torch::Tensor BlipTextLMHeadModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& image_embeds,
                                               BlipKVCache* cache) {
  const int64_t past = cache ? cache->length() : 0, n = ids.size(1);
  TINV_CHECK(past + n <= config.max_position_embeddings, "blip text decoder", "sequence of ", past + n,
             " tokens exceeds max_position_embeddings (", config.max_position_embeddings, ")");
  TINV_CHECK(image_embeds.size(0) == ids.size(0) && image_embeds.size(-1) == config.encoder_hidden_size,
             "blip text decoder", "image_embeds ", image_embeds.sizes(), " do not match ids ", ids.sizes());
  if (cache && cache->self_k.empty()) {
    size_t L = layers->size();
    cache->self_k.resize(L), cache->self_v.resize(L), cache->cross_k.resize(L), cache->cross_v.resize(L);
  }
  auto positions = torch::arange(past, past + n, torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
  auto x = word_embeddings(ids) + position_embeddings(positions).unsqueeze(0);  // [B, N, D]
  x = embeddings_norm(x);
  for (size_t i = 0; i < layers->size(); ++i) x = layers[i]->as<BlipTextLayer>()->forward(x, image_embeds, cache, i);
  return x;
}

// Mirrors HF BlipTextOnlyMLMHead: transform (dense, act, LayerNorm), decoder + bias.
torch::Tensor BlipTextLMHeadModelImpl::logits(const torch::Tensor& hidden) {
  auto h = transform_norm(blip_activation(transform_dense(hidden), config.hidden_act));
  // One row (greedy step): a matrix-vector product streams the [V, D] weight once, where
  // the GEMM path first packs all of it (3x slower per step on CPU).
  if (h.numel() == h.size(-1)) {
    auto sizes = h.sizes().vec();
    sizes.back() = config.vocab_size;
    return (torch::mv(decoder->weight, h.reshape({-1})) + bias).view(sizes);  // [.., V]
  }
  return decoder(h) + bias;  // [.., V]
}

BlipForConditionalGenerationImpl::BlipForConditionalGenerationImpl(const BlipConfig& cfg) : config(cfg) {
  vision_model = register_module("vision_model", BlipVisionModel(cfg.vision));
  text_decoder = register_module("text_decoder", BlipTextLMHeadModel(cfg.text));
}

void load_blip_weights(BlipForConditionalGenerationImpl& model, const std::string& path) {
  StateDict sd = load_state_dict_file(path);
  const std::string pred = "text_decoder.cls.predictions.";
  const std::string words = "text_decoder.bert.embeddings.word_embeddings.weight";
  const bool tied = !sd.count(pred + "decoder.weight");
  if (tied && sd.count(words)) sd[pred + "decoder.weight"] = sd.at(words);
  // HF ties cls.predictions.decoder.bias to cls.predictions.bias; files hold either or both.
  if (sd.count(pred + "decoder.bias")) {
    if (!sd.count(pred + "bias")) sd[pred + "bias"] = sd.at(pred + "decoder.bias");
    sd.erase(pred + "decoder.bias");
  }
  sd.erase("text_decoder.bert.embeddings.position_ids");
  load_state_dict(model, sd, path);
  if (tied) {  // share the storage instead of holding the vocabulary matrix twice
    torch::NoGradGuard no_grad;
    model.text_decoder->decoder->weight.set_data(model.text_decoder->word_embeddings->weight.data());
  }
}

}  // namespace tinv
