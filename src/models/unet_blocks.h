// Building blocks of the UNet, each mirroring the diffusers 0.25 module of the same name and
// registering its submodules under the diffusers checkpoint names:
//   ResnetBlock2D        norm1 conv1 time_emb_proj norm2 conv2 [conv_shortcut]
//   Attention            to_q to_k to_v to_out.0
//   FeedForward (GEGLU)  net.0.proj net.2
//   BasicTransformerBlock norm1 attn1 norm2 attn2 norm3 ff
//   Transformer2DModel   norm proj_in transformer_blocks.k proj_out
//   Downsample2D / Upsample2D  conv
//   CrossAttnDownBlock2D / DownBlock2D   resnets.j [attentions.j] [downsamplers.0]
//   UNetMidBlock2DCrossAttn              resnets.0 attentions.0 resnets.1
//   CrossAttnUpBlock2D / UpBlock2D       resnets.j [attentions.j] [upsamplers.0]
// Used by models/unet.cpp; not a public API.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace tinv {

// Settings shared by every block of one UNet.
struct BlockSettings {
  int64_t temb_dim = 1280;  // time embedding width
  int64_t cross_dim = 768;  // encoder_hidden_states width
  int64_t groups = 32;      // GroupNorm groups
  double eps = 1e-5;        // resnet GroupNorm eps
  bool linear_projection = false;
  bool upcast_attention = false;
};

// diffusers TimestepEmbedding: linear_1 -> SiLU -> linear_2.
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_dim, int64_t dim);
  torch::Tensor forward(const torch::Tensor& t_features);  // [B, in] -> [B, dim]
  torch::nn::Linear linear_1{nullptr}, linear_2{nullptr};
};

// diffusers ResnetBlock2D (time_embedding_norm "default", output_scale_factor).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in, int64_t out, const BlockSettings& s, double output_scale = 1.0);
  // x [B, in, H, W], temb_act = SiLU(time embedding) [B, temb_dim] -> [B, out, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb_act);

 private:
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  torch::nn::Linear time_emb_proj{nullptr};
  double output_scale_;
};

// diffusers Attention with AttnProcessor (no q/k/v bias, to_out.0 with bias).
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, bool upcast);
  // x [B, N, C]; context [B, L, context_dim] or undefined for self-attention -> [B, N, C]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

 private:
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out{nullptr};
  torch::nn::ModuleList to_out;
  int64_t heads_;
  bool upcast_;
};

// diffusers GEGLU: proj to 2*inner, hidden * gelu(gate).
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(int64_t dim, int64_t inner);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, dim] -> [B, N, inner]
  torch::nn::Linear proj{nullptr};
};

// diffusers BasicTransformerBlock (layer_norm, self-attention, cross-attention, GEGLU FF).
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, const BlockSettings& s);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& context);  // [B, N, dim]

 private:
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  std::shared_ptr<AttentionImpl> attn1, attn2;
  std::shared_ptr<GEGLUImpl> geglu;
  torch::nn::Linear ff_out{nullptr};
};

// diffusers Transformer2DModel for continuous inputs (1x1-conv or linear projections).
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t layers, const BlockSettings& s);
  // x [B, C, H, W], context [B, L, cross] -> [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

 private:
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};
  torch::nn::Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};
  std::vector<std::shared_ptr<BasicTransformerBlockImpl>> blocks_;
};

// CrossAttnDownBlock2D (with_attention) or DownBlock2D.
class DownBlock2DImpl : public torch::nn::Module {
 public:
  DownBlock2DImpl(int64_t in, int64_t out, int64_t layers, bool with_attention, int64_t heads,
                  int64_t transformer_layers, bool add_downsample, int64_t downsample_padding, const BlockSettings& s);
  // Appends every intermediate output (one per layer, then the downsampled one) to `skips`.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb_act, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips);

 private:
  std::vector<std::shared_ptr<ResnetBlock2DImpl>> resnets_;
  std::vector<std::shared_ptr<Transformer2DModelImpl>> attentions_;
  torch::nn::Conv2d down_conv{nullptr};
  int64_t downsample_padding_ = 1;
};

// UNetMidBlock2DCrossAttn (num_layers 1).
class MidBlock2DCrossAttnImpl : public torch::nn::Module {
 public:
  MidBlock2DCrossAttnImpl(int64_t channels, int64_t heads, int64_t transformer_layers, double output_scale,
                          const BlockSettings& s);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb_act, const torch::Tensor& context);

 private:
  std::vector<std::shared_ptr<ResnetBlock2DImpl>> resnets_;
  std::vector<std::shared_ptr<Transformer2DModelImpl>> attentions_;
};

// CrossAttnUpBlock2D (with_attention) or UpBlock2D. `in` is the channel count of the matching
// down level's input (skip of the last layer), `prev_out` that of the incoming hidden states.
class UpBlock2DImpl : public torch::nn::Module {
 public:
  UpBlock2DImpl(int64_t in, int64_t prev_out, int64_t out, int64_t layers, bool with_attention, int64_t heads,
                int64_t transformer_layers, bool add_upsample, const BlockSettings& s);
  // Pops one skip per layer from the back of `skips`. upsample_size {h, w} or empty for x2.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb_act, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips, const std::vector<int64_t>& upsample_size);
  int64_t num_layers() const { return static_cast<int64_t>(resnets_.size()); }

 private:
  std::vector<std::shared_ptr<ResnetBlock2DImpl>> resnets_;
  std::vector<std::shared_ptr<Transformer2DModelImpl>> attentions_;
  torch::nn::Conv2d up_conv{nullptr};
};

}  // namespace tinv
