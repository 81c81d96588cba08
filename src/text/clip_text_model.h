// The CLIP text encoder of Stable Diffusion (HF transformers CLIPTextModel), frozen, with
// learnable rows for added (placeholder) tokens.
//
//   auto te = tinv::load_clip_text_model("sd15/text_encoder");     // config.json + weights
//   torch::Tensor h = te->forward(ids);                            // [B, 77] -> [B, 77, 768]
//
//   // Textual inversion: ids >= vocab_size index rows of `extra` ([n, D], requires grad).
//   auto extra = te->token_embeddings(init_ids).clone().requires_grad_(true);
//   auto h2 = te->forward(ids_with_placeholders, extra);          // grads reach `extra` only
//
// Parameter names are exactly the HF keys of `text_encoder/model.safetensors`:
//   text_model.embeddings.{token,position}_embedding.weight
//   text_model.encoder.layers.N.self_attn.{q,k,v,out}_proj.{weight,bias}
//   text_model.encoder.layers.N.{layer_norm1,layer_norm2}.{weight,bias}
//   text_model.encoder.layers.N.mlp.{fc1,fc2}.{weight,bias}
//   text_model.final_layer_norm.{weight,bias}
//   text_projection.weight                  (CLIPTextModelWithProjection only: SDXL's 2nd encoder)
// Single-file (LDM / OpenCLIP) names are converted to these by io/convert_text.h.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "io/safetensors.h"

namespace tinv {

class JsonConfig;

// HF CLIPTextConfig. Defaults are transformers' class defaults (config.json files written by
// save_pretrained may omit fields equal to them).
struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // "quick_gelu" (x*sigmoid(1.702x)) or "gelu" (erf)
  double layer_norm_eps = 1e-5;
  // Informational: the tokenizer decides the ids actually fed to the model.
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;
  int64_t pad_token_id = 1;
  // CLIPTextModelWithProjection (SDXL's text_encoder_2): a bias-free text_projection
  // [projection_dim, hidden_size] applied to the pooled (first-EOS) final state.
  bool with_projection = false;
  int64_t projection_dim = 512;

  // Reads an HF config.json (CLIPTextModel). Throws tinv::Error naming the file and the field
  // for a wrong type or an invalid value.
  static ClipTextConfig from_json(const JsonConfig& cfg);
  // SD 1.x: OpenAI CLIP ViT-L/14 text tower (768 wide, 12 layers, 12 heads, quick_gelu).
  static ClipTextConfig sd15();
  // SD 2.x: OpenCLIP ViT-H/14 text tower, 23 of its 24 layers (1024, 16 heads, gelu).
  static ClipTextConfig sd21();
  // SDXL: CLIP ViT-L (768, 12 layers, quick_gelu) and OpenCLIP bigG (1280, 32 layers, 20 heads,
  // gelu, projection 1280).
  static ClipTextConfig sdxl_l();
  static ClipTextConfig sdxl_g();

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Throws tinv::Error(source, "field '...' ...") for the first invalid value.
  void validate(const std::string& source) const;
};

// HF CLIPAttention: q/k/v/out projections, causal multi-head attention.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D] -> [B, L, D]

 private:
  int64_t heads_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

// HF CLIPMLP: fc1 -> activation -> fc2.
class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t hidden, int64_t intermediate, std::string act);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D] -> [B, L, D]

 private:
  std::string act_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(ClipMlp);

// HF CLIPEncoderLayer (pre-LN): x + attn(ln1(x)), then x + mlp(ln2(x)).
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipTextConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D] -> [B, L, D]

 private:
  ClipAttention self_attn_{nullptr};
  torch::nn::LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  ClipMlp mlp_{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

// What SDXL reads from an encoder (mirrors transformers' CLIPTextModel[WithProjection] outputs
// with output_hidden_states=True).
struct ClipTextOutputs {
  torch::Tensor last_hidden_state;  // [B, L, D] after final_layer_norm
  torch::Tensor penultimate;        // [B, L, D] hidden_states[-2]: output of the second-to-last
                                    //   layer, no final norm (the embeddings for a 1-layer model)
  torch::Tensor pooled;             // [B, P] text_embeds (with projection) or pooler_output [B, D]:
                                    //   final state at the first eos_token_id position
};

// HF CLIPTextModel. Constructed frozen: every parameter has requires_grad false.
class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);

  // input_ids [B, L] int64 (L <= max_position_embeddings) -> last_hidden_state [B, L, D]
  // (after the final layer norm; causal mask, no padding mask).
  // extra_embeddings [n, D] (optional): row i is the embedding of id vocab_size + i. Autograd
  // tracks these rows only. Throws tinv::Error for ids < 0 or >= vocab_size + n, a wrong
  // extra_embeddings shape, or L > max_position_embeddings.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& extra_embeddings = {});

  // Every output SDXL needs in one pass (same arguments and errors as forward).
  ClipTextOutputs forward_all(const torch::Tensor& input_ids, const torch::Tensor& extra_embeddings = {});

  // Input embeddings before the encoder: token (+ extra) rows plus positions. [B, L, D].
  torch::Tensor embed(const torch::Tensor& input_ids, const torch::Tensor& extra_embeddings = {});

  // Rows of the token table for ids (any shape, each < vocab_size) -> [..., D], detached copy;
  // used to initialise placeholder rows.
  torch::Tensor token_embeddings(const torch::Tensor& ids);

  const ClipTextConfig& config() const { return config_; }

 private:
  ClipTextConfig config_;
  torch::nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  torch::nn::LayerNorm final_layer_norm_{nullptr};
  torch::nn::Linear text_projection_{nullptr};  // with_projection only
};
TORCH_MODULE(ClipTextModel);

// Strictly loads HF-named weights (`text_model.*`) into `model`; an
// `text_model.embeddings.position_ids` buffer in `sd` is accepted and ignored. Throws
// tinv::Error naming `source` and the missing / unexpected / mis-shaped tensor.
void load_clip_text_weights(ClipTextModel& model, const StateDict& sd, const std::string& source);

// Reads `<folder>/config.json` and `<folder>/model.safetensors` (or the `model.fp16.safetensors`
// variant, or a sharded `model[.fp16].safetensors.index.json`), returns the frozen model in eval mode on the CPU.
ClipTextModel load_clip_text_model(const std::string& folder);

}  // namespace tinv
