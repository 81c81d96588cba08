// BLIP captioning model (HF BlipForConditionalGeneration): ViT vision encoder and BERT text
// decoder with cross-attention, under the checkpoint's key names.
//
//   auto cfg = tinv::BlipConfig::load("blip/config.json");      // validated
//   tinv::BlipForConditionalGeneration model(cfg);
//   tinv::load_blip_weights(*model, "blip/model.safetensors");  // strict, ties the LM head
//   auto embeds = model->vision_model->forward(pixel_values);    // [B, 1+P, Dv]
//   auto hidden = model->text_decoder->forward(ids, embeds);     // [B, N, D]
//   auto logits = model->text_decoder->logits(hidden);           // [B, N, V]
//
// Shapes follow config.json (vision_config / text_config); nothing is fixed to base or large.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace tinv {

class JsonConfig;

// HF BlipVisionConfig (defaults: BLIP base).
struct BlipVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 384;
  int64_t patch_size = 16;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-5;

  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  static BlipVisionConfig base();
  static BlipVisionConfig large();  // 1024 wide, 24 layers, 16 heads
  // Fields absent from the JSON keep the defaults above; every value is validated.
  static BlipVisionConfig from_json(const JsonConfig& cfg);
  void validate(const std::string& where) const;
};

// HF BlipTextConfig (defaults: BLIP base; `encoder_hidden_size` = vision hidden size).
struct BlipTextConfig {
  int64_t vocab_size = 30524;
  int64_t hidden_size = 768;
  int64_t encoder_hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 512;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  int64_t bos_token_id = 30522;  // [DEC]
  int64_t sep_token_id = 102;    // [SEP]: ends a caption
  int64_t pad_token_id = 0;

  static BlipTextConfig base();
  static BlipTextConfig large();  // encoder_hidden_size 1024
  static BlipTextConfig from_json(const JsonConfig& cfg);
  void validate(const std::string& where) const;
};

struct BlipConfig {
  BlipVisionConfig vision;
  BlipTextConfig text;
  static BlipConfig base();
  static BlipConfig large();
  // config.json of BlipForConditionalGeneration; both `vision_config` and `text_config` are
  // required (tinv::Error naming the file otherwise), and their widths must agree.
  static BlipConfig load(const std::string& path);
  static BlipConfig from_json(const JsonConfig& cfg);
};

// Applies a config activation name ("gelu", "gelu_new"/"gelu_pytorch_tanh", "relu", "silu").
torch::Tensor blip_activation(const torch::Tensor& x, const std::string& name);

// ---- vision ----------------------------------------------------------------------------

// HF BlipVisionEmbeddings: patch conv, class token, learned positions.
struct BlipVisionEmbeddingsImpl : torch::nn::Module {
  explicit BlipVisionEmbeddingsImpl(const BlipVisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& pixel_values);  // [B,3,H,W] -> [B,1+P,D]
  torch::Tensor class_embedding, position_embedding;
  torch::nn::Conv2d patch_embedding{nullptr};
};
TORCH_MODULE(BlipVisionEmbeddings);

// HF BlipAttention: fused qkv, output `projection`.
struct BlipAttentionImpl : torch::nn::Module {
  explicit BlipAttentionImpl(const BlipVisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // [B,N,D] -> [B,N,D]
  int64_t heads;
  torch::nn::Linear qkv{nullptr}, projection{nullptr};
};
TORCH_MODULE(BlipAttention);

// HF BlipMLP: fc1, activation, fc2.
struct BlipMLPImpl : torch::nn::Module {
  explicit BlipMLPImpl(const BlipVisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  std::string act;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(BlipMLP);

// HF BlipEncoderLayer (pre-LN).
struct BlipEncoderLayerImpl : torch::nn::Module {
  explicit BlipEncoderLayerImpl(const BlipVisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  BlipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  BlipMLP mlp{nullptr};
};
TORCH_MODULE(BlipEncoderLayer);

// HF BlipVisionModel: embeddings, encoder.layers.N, post_layernorm -> image_embeds.
struct BlipVisionModelImpl : torch::nn::Module {
  explicit BlipVisionModelImpl(const BlipVisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& pixel_values);  // [B,3,S,S] -> [B,1+P,D]
  BlipVisionConfig config;
  BlipVisionEmbeddings embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};  // registered as encoder.layers
  torch::nn::LayerNorm post_layernorm{nullptr};
};
TORCH_MODULE(BlipVisionModel);

// ---- text ------------------------------------------------------------------------------

// Keys and values a decoder keeps between steps: per layer, self-attention K/V of every
// position so far ([B,H,T,d]) and cross-attention K/V of the image ([B,H,M,d], computed once).
struct BlipKVCache {
  std::vector<torch::Tensor> self_k, self_v, cross_k, cross_v;
  int64_t length() const { return self_k.empty() || !self_k[0].defined() ? 0 : self_k[0].size(2); }
  // Keeps batch rows `index` (beam search: the parent beam of each new beam).
  void reorder(const torch::Tensor& index);
};

// HF BlipTextSelfAttention (query/key/value), for self- and cross-attention.
struct BlipTextSelfAttentionImpl : torch::nn::Module {
  BlipTextSelfAttentionImpl(const BlipTextConfig& cfg, bool cross);
  // x [B,N,D]; self-attention is causal over cache + x; cross-attention reads `context`.
  // k_cache/v_cache (may be null): in/out cached keys and values.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, torch::Tensor* k_cache,
                        torch::Tensor* v_cache);
  int64_t heads;
  bool cross;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
};
TORCH_MODULE(BlipTextSelfAttention);

// HF BlipTextSelfOutput / BlipTextOutput: dense, residual, LayerNorm (post-LN).
struct BlipTextOutputImpl : torch::nn::Module {
  BlipTextOutputImpl(int64_t in, int64_t out, double eps);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(BlipTextOutput);

// HF BlipTextAttention: `self` + `output`.
struct BlipTextAttentionImpl : torch::nn::Module {
  BlipTextAttentionImpl(const BlipTextConfig& cfg, bool cross);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, torch::Tensor* k_cache,
                        torch::Tensor* v_cache);
  BlipTextSelfAttention self{nullptr};
  BlipTextOutput output{nullptr};
};
TORCH_MODULE(BlipTextAttention);

// HF BlipTextLayer: causal self-attention, cross-attention, feed-forward.
struct BlipTextLayerImpl : torch::nn::Module {
  explicit BlipTextLayerImpl(const BlipTextConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& image_embeds, BlipKVCache* cache, size_t index);
  std::string act;
  BlipTextAttention attention{nullptr}, crossattention{nullptr};
  torch::nn::Linear intermediate{nullptr};  // registered as intermediate.dense
  BlipTextOutput output{nullptr};
};
TORCH_MODULE(BlipTextLayer);

// HF BlipTextLMHeadModel: bert.{embeddings,encoder.layer.N} and cls.predictions.
struct BlipTextLMHeadModelImpl : torch::nn::Module {
  explicit BlipTextLMHeadModelImpl(const BlipTextConfig& cfg);
  // ids [B,N] -> hidden states [B,N,D]. With a cache, ids are the new positions after
  // cache->length() earlier ones, and the cache is extended.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& image_embeds, BlipKVCache* cache = nullptr);
  // LM head: hidden [.., D] -> logits [.., V].
  torch::Tensor logits(const torch::Tensor& hidden);
  BlipTextConfig config;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Linear transform_dense{nullptr}, decoder{nullptr};
  torch::nn::LayerNorm transform_norm{nullptr};
  torch::Tensor bias;  // cls.predictions.bias (the decoder's bias in HF)
};
TORCH_MODULE(BlipTextLMHeadModel);

// HF BlipForConditionalGeneration (captioning parts: vision_model, text_decoder).
struct BlipForConditionalGenerationImpl : torch::nn::Module {
  explicit BlipForConditionalGenerationImpl(const BlipConfig& cfg);
  BlipConfig config;
  BlipVisionModel vision_model{nullptr};
  BlipTextLMHeadModel text_decoder{nullptr};
};
TORCH_MODULE(BlipForConditionalGeneration);

// Loads model.safetensors into `model` strictly. The LM head decoder weight is tied to the
// word embeddings when the file omits it; `cls.predictions.bias` and
// `cls.predictions.decoder.bias` (the same tensor in HF) may appear either or both.
// `text_decoder.bert.embeddings.position_ids` is ignored; keys of other BLIP heads
// (text_encoder, vision_proj, ...) are rejected as unexpected.
void load_blip_weights(BlipForConditionalGenerationImpl& model, const std::string& path);

}  // namespace tinv
