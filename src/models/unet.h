// UNet2DConditionModel of Stable Diffusion 1.x / 2.x / XL, mirroring diffusers 0.25
// (`diffusers.models.unets.unet_2d_condition.UNet2DConditionModel`).
//
//   tinv::UNetConfig cfg = tinv::UNetConfig::from_json(tinv::JsonConfig::load("unet/config.json"));
//   tinv::UNet2DConditionModel unet(cfg);                  // libtorch default initialisation
//   tinv::load_state_dict(*unet, weights, "unet");         // diffusers key names, strict
//   torch::Tensor eps = unet->forward(latents, t, text);   // [B,4,h,w], [B], [B,77,768]
//
//   auto unet = tinv::load_unet_folder("model/unet");      // config.json + safetensors, frozen
//
//   // SDXL (addition_embed_type "text_time"): pooled text [B, P] and time_ids [B, 6]
//   torch::Tensor eps = unet->forward(latents, t, text, {pooled, time_ids});
//
// Parameters are registered under the diffusers checkpoint names (`down_blocks.0.resnets.1.conv1`,
// `...attentions.0.transformer_blocks.0.attn1.to_out.0`, `up_blocks.1.upsamplers.0.conv`, ...),
// so a diffusers state dict loads by name; LDM single files go through io/convert_unet.h first.
//
// Textual inversion: freeze() the model (requires_grad=false on every parameter) and let only
// encoder_hidden_states require grad; backward then computes no weight gradient at all.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/json_config.h"

namespace tinv {

// Every diffusers config field that affects an SD1/SD2 UNet. Defaults are SD1.5's.
// Fields given as "int or per-block list" in config.json are stored per down block here.
struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  std::vector<int64_t> layers_per_block = {2, 2, 2, 2};  // per down block; up blocks use +1
  std::vector<std::string> down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                               "DownBlock2D"};
  std::vector<std::string> up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                             "CrossAttnUpBlock2D"};
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";  // or "" (null: no mid block)
  // Number of attention heads per down block (diffusers: num_attention_heads, or the misnamed
  // attention_head_dim when num_attention_heads is null). Up blocks use the reversed list, the
  // mid block the last entry; head size = block channels / heads.
  std::vector<int64_t> num_attention_heads = {8, 8, 8, 8};
  std::vector<int64_t> transformer_layers_per_block = {1, 1, 1, 1};  // per down block
  int64_t cross_attention_dim = 768;
  bool use_linear_projection = false;  // proj_in/proj_out Linear (SD2) instead of 1x1 conv
  bool upcast_attention = false;       // attention scores in float32
  bool only_cross_attention = false;   // must be false (validated)
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  std::string act_fn = "silu";
  int64_t sample_size = 64;
  int64_t time_embedding_dim = 0;  // 0: 4 * block_out_channels[0]
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;
  bool center_input_sample = false;  // sample = 2 * sample - 1 before conv_in
  // SDXL added conditions: "" (none) or "text_time": add_embedding (TimestepEmbedding from
  // projection_class_embeddings_input_dim = P + 6 * addition_time_embed_dim) of [pooled text,
  // sinusoidal features of each of the 6 time_ids] is added to the timestep embedding.
  std::string addition_embed_type;
  int64_t addition_time_embed_dim = 256;
  int64_t projection_class_embeddings_input_dim = 0;

  // Reads a diffusers config.json, validating every field up front; throws tinv::Error naming
  // the file and the field (unknown block types, list lengths, channel/group/head divisibility,
  // and features SD1/SD2 do not use: class/addition embeddings, dual cross attention, ...).
  static UNetConfig from_json(const JsonConfig& json);
  // Checks the invariants (called by from_json and the model constructor).
  void validate(const std::string& where = "UNetConfig") const;

  static UNetConfig sd15();
  static UNetConfig sd21();  // stabilityai/stable-diffusion-2-1 (768-v): linear proj, upcast
  static UNetConfig sdxl();  // stabilityai/stable-diffusion-xl-base-1.0
  bool text_time() const { return addition_embed_type == "text_time"; }
  // Width of the pooled text vector the text_time embedding expects.
  int64_t pooled_dim() const { return projection_class_embeddings_input_dim - 6 * addition_time_embed_dim; }

  int64_t num_blocks() const { return static_cast<int64_t>(block_out_channels.size()); }
  int64_t time_embed_dim() const { return time_embedding_dim > 0 ? time_embedding_dim : 4 * block_out_channels[0]; }
  bool down_has_attention(int64_t i) const { return down_block_types[i] == "CrossAttnDownBlock2D"; }
  bool up_has_attention(int64_t i) const { return up_block_types[i] == "CrossAttnUpBlock2D"; }
};

class TimestepEmbeddingImpl;
class DownBlock2DImpl;
class MidBlock2DCrossAttnImpl;
class UpBlock2DImpl;

// The added conditions of an SDXL UNet (diffusers `added_cond_kwargs`).
struct AddedConditions {
  torch::Tensor text_embeds;  // [B or 1, P] pooled, projected text of text_encoder_2
  torch::Tensor time_ids;     // [B or 1, 6] (orig h, orig w, crop top, crop left, target h, target w)
  bool defined() const { return text_embeds.defined(); }
};

// diffusers UNet2DConditionModel (SD1/SD2/SDXL subset: positional time embedding, the
// "text_time" addition embedding, no class embeddings).
class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionModelImpl(const UNetConfig& config);

  // sample [B, in_C, H, W]; timesteps [B] (int64 or float) or a scalar (broadcast to B);
  // encoder_hidden_states [B, L, cross_attention_dim]. Returns [B, out_C, H, W].
  // H and W need not be multiples of 2^levels (upsample sizes follow the skip connections).
  // `added` is required for a text_time UNet and refused otherwise (tinv::Error).
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& encoder_hidden_states, const AddedConditions& added = {});

  // The sinusoidal timestep features, exactly diffusers get_timestep_embedding:
  // [B] -> [B, dim] float32 (dim 0: block_out_channels[0]).
  torch::Tensor timestep_features(const torch::Tensor& timesteps, int64_t dim = 0) const;

  const UNetConfig& config() const { return config_; }

 private:
  torch::Tensor text_time_embedding(const AddedConditions& added, int64_t b, const torch::Tensor& like);

  UNetConfig config_;
  torch::nn::Conv2d conv_in{nullptr};
  std::shared_ptr<TimestepEmbeddingImpl> time_embedding_;
  std::shared_ptr<TimestepEmbeddingImpl> add_embedding_;  // text_time only
  std::vector<std::shared_ptr<DownBlock2DImpl>> down_blocks_;
  std::shared_ptr<MidBlock2DCrossAttnImpl> mid_block_;
  std::vector<std::shared_ptr<UpBlock2DImpl>> up_blocks_;
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE(UNet2DConditionModel);

// Re-initialises every parameter deterministically from `seed` (libtorch's default schemes:
// kaiming-uniform weights, uniform biases; norms weight 1 bias 0). For tests and benchmarks.
void init_random(torch::nn::Module& module, uint64_t seed);

// Loads a diffusers `unet/` folder: config.json plus diffusion_pytorch_model.safetensors (or the
// .fp16.safetensors variant, or a sharded index). Weights are converted to float32 and frozen.
// Throws tinv::Error when the folder holds only PyTorch .bin weights or nothing.
UNet2DConditionModel load_unet_folder(const std::string& folder);

}  // namespace tinv
