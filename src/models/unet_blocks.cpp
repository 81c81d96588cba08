#include "models/unet_blocks.h"

#include <torch/torch.h>

#include "nn/attention_ops.h"

namespace tinv {
namespace {

namespace F = torch::nn::functional;

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps));
}

torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? (k - 1) / 2 : pad));
}

torch::nn::Linear linear(int64_t in, int64_t out, bool bias = true) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// A module that only holds `conv` (diffusers Downsample2D / Upsample2D with use_conv).
std::shared_ptr<torch::nn::Module> conv_holder(const torch::nn::Conv2d& conv) {
  auto m = std::make_shared<torch::nn::Module>();
  m->register_module("conv", conv);
  return m;
}

}  // namespace

// --- TimestepEmbedding ----------------------------------------------------------------------

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_dim, int64_t dim) {
  linear_1 = register_module("linear_1", linear(in_dim, dim));
  linear_2 = register_module("linear_2", linear(dim, dim));
}

// Mirrors diffusers TimestepEmbedding.forward (act_fn silu, no cond_proj, no post_act).
torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& t_features) {
  return linear_2(torch::silu(linear_1(t_features)));  // [B, dim]
}

// --- ResnetBlock2D --------------------------------------------------------------------------

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, const BlockSettings& s, double output_scale)
    : output_scale_(output_scale) {
  norm1 = register_module("norm1", group_norm(s.groups, in, s.eps));
  conv1 = register_module("conv1", conv2d(in, out, 3));
  time_emb_proj = register_module("time_emb_proj", linear(s.temb_dim, out));
  norm2 = register_module("norm2", group_norm(s.groups, out, s.eps));
  conv2 = register_module("conv2", conv2d(out, out, 3));
  if (in != out) conv_shortcut = register_module("conv_shortcut", conv2d(in, out, 1));
}

// Mirrors diffusers ResnetBlock2D.forward (time_embedding_norm "default", dropout 0).
torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb_act) {
  auto h = conv1(torch::silu(norm1(x)));                        // [B, out, H, W]
  h.add_(time_emb_proj(temb_act).unsqueeze(-1).unsqueeze(-1));  // + [B, out, 1, 1]
  h = conv2(torch::silu(norm2(h)));                             // [B, out, H, W]
  h.add_(conv_shortcut ? conv_shortcut(x) : x);                 // conv output: not saved
  if (output_scale_ != 1.0) h.div_(output_scale_);
  return h;
}

// --- Attention ------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, bool upcast)
    : heads_(heads), upcast_(upcast) {
  to_q = register_module("to_q", linear(query_dim, query_dim, false));
  to_k = register_module("to_k", linear(context_dim, query_dim, false));
  to_v = register_module("to_v", linear(context_dim, query_dim, false));
  out = linear(query_dim, query_dim);
  to_out = register_module("to_out", torch::nn::ModuleList(out));  // to_out.0 (+ dropout)
}

// Mirrors diffusers Attention with AttnProcessor2_0 (scaled dot product, scale 1/sqrt(d)).
torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto& ctx = context.defined() ? context : x;
  auto q = split_heads(to_q(x), heads_);    // [B, H, N, d]
  auto k = split_heads(to_k(ctx), heads_);  // [B, H, L, d]
  auto v = split_heads(to_v(ctx), heads_);  // [B, H, L, d]
  AttentionOptions opts;
  opts.upcast = upcast_;
  auto o = merge_heads(dot_product_attention(q, k, v, opts));  // [B, N, C]
  return out(o);
}

// --- FeedForward ----------------------------------------------------------------------------

GEGLUImpl::GEGLUImpl(int64_t dim, int64_t inner) { proj = register_module("proj", linear(dim, 2 * inner)); }

// Mirrors diffusers GEGLU: hidden, gate = proj(x).chunk(2); hidden * gelu(gate) (exact gelu).
torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto hg = proj(x).chunk(2, -1);  // 2 x [B, N, inner]
  return hg[0] * torch::gelu(hg[1]);
}

// --- BasicTransformerBlock ------------------------------------------------------------------

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, const BlockSettings& s) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)); };
  norm1 = register_module("norm1", ln());
  attn1 = register_module("attn1", std::make_shared<AttentionImpl>(dim, dim, heads, s.upcast_attention));
  norm2 = register_module("norm2", ln());
  attn2 = register_module("attn2", std::make_shared<AttentionImpl>(dim, s.cross_dim, heads, s.upcast_attention));
  norm3 = register_module("norm3", ln());
  // ff.net = [GEGLU (net.0.proj), Dropout (no weights), Linear (net.2)]
  geglu = std::make_shared<GEGLUImpl>(dim, 4 * dim);
  ff_out = linear(4 * dim, dim);
  auto net = torch::nn::ModuleList();
  net->push_back(geglu);
  net->push_back(torch::nn::Identity());
  net->push_back(ff_out);
  auto ff = std::make_shared<torch::nn::Module>();
  ff->register_module("net", net);
  register_module("ff", ff);
}

// Mirrors diffusers BasicTransformerBlock.forward (norm_type "layer_norm", no ada norms).
torch::Tensor BasicTransformerBlockImpl::forward(torch::Tensor x, const torch::Tensor& context) {
  x = attn1->forward(norm1(x), torch::Tensor()).add_(x);  // self-attention + residual
  x = attn2->forward(norm2(x), context).add_(x);          // cross-attention + residual
  return ff_out(geglu->forward(norm3(x))).add_(x);        // feed-forward + residual
}

// --- Transformer2DModel ---------------------------------------------------------------------

Transformer2DModelImpl::Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t layers,
                                               const BlockSettings& s) {
  norm = register_module("norm", group_norm(s.groups, channels, 1e-6));
  if (s.linear_projection)
    proj_in_linear = register_module("proj_in", linear(channels, channels));
  else
    proj_in_conv = register_module("proj_in", conv2d(channels, channels, 1));
  auto list = torch::nn::ModuleList();
  for (int64_t k = 0; k < layers; ++k) {
    blocks_.push_back(std::make_shared<BasicTransformerBlockImpl>(channels, heads, s));
    list->push_back(blocks_.back());
  }
  register_module("transformer_blocks", list);
  if (s.linear_projection)
    proj_out_linear = register_module("proj_out", linear(channels, channels));
  else
    proj_out_conv = register_module("proj_out", conv2d(channels, channels, 1));
}

// Mirrors diffusers Transformer2DModel._operate_on_continuous_inputs / _get_output_for_...
torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto t = norm(x);  // [B, C, H, W]
  if (proj_in_conv) t = proj_in_conv(t);
  t = t.permute({0, 2, 3, 1}).reshape({b, h * w, c});  // [B, HW, C]
  if (proj_in_linear) t = proj_in_linear(t);
  for (auto& block : blocks_) t = block->forward(t, context);
  if (proj_out_linear) t = proj_out_linear(t);
  t = t.view({b, h, w, c}).permute({0, 3, 1, 2}).contiguous();  // [B, C, H, W]
  if (proj_out_conv) t = proj_out_conv(t);
  return t.add_(x);  // + residual
}

// --- Down / mid / up blocks -----------------------------------------------------------------

namespace {

// The layers of a down or up block as they are built: each a ResnetBlock2D and, with attention,
// a Transformer2DModel, kept in the block's typed vectors and in the lists registered under
// "resnets" / "attentions" (the diffusers names).
struct BlockLayers {
  std::vector<std::shared_ptr<ResnetBlock2DImpl>>& resnets;
  std::vector<std::shared_ptr<Transformer2DModelImpl>>& attentions;
  bool with_attention;
  torch::nn::ModuleList resnet_list{}, attention_list{};

  void add(int64_t in, int64_t out, int64_t heads, int64_t transformer_layers, const BlockSettings& s) {
    resnets.push_back(std::make_shared<ResnetBlock2DImpl>(in, out, s));
    resnet_list->push_back(resnets.back());
    if (!with_attention) return;
    attentions.push_back(std::make_shared<Transformer2DModelImpl>(out, heads, transformer_layers, s));
    attention_list->push_back(attentions.back());
  }
  void register_in(torch::nn::Module& block) {
    block.register_module("resnets", resnet_list);
    if (with_attention) block.register_module("attentions", attention_list);
  }
};

}  // namespace

DownBlock2DImpl::DownBlock2DImpl(int64_t in, int64_t out, int64_t layers, bool with_attention, int64_t heads,
                                 int64_t transformer_layers, bool add_downsample, int64_t downsample_padding,
                                 const BlockSettings& s)
    : downsample_padding_(downsample_padding) {
  BlockLayers block{resnets_, attentions_, with_attention};
  for (int64_t j = 0; j < layers; ++j) block.add(j == 0 ? in : out, out, heads, transformer_layers, s);
  block.register_in(*this);
  if (add_downsample) {
    down_conv = conv2d(out, out, 3, 2, downsample_padding);
    register_module("downsamplers", torch::nn::ModuleList(conv_holder(down_conv)));
  }
}

// Mirrors diffusers CrossAttnDownBlock2D.forward / DownBlock2D.forward and Downsample2D.
torch::Tensor DownBlock2DImpl::forward(torch::Tensor x, const torch::Tensor& temb_act, const torch::Tensor& context,
                                       std::vector<torch::Tensor>& skips) {
  for (size_t j = 0; j < resnets_.size(); ++j) {
    x = resnets_[j]->forward(x, temb_act);
    if (!attentions_.empty()) x = attentions_[j]->forward(x, context);
    skips.push_back(x);
  }
  if (down_conv) {
    if (downsample_padding_ == 0) x = F::pad(x, F::PadFuncOptions({0, 1, 0, 1}));
    x = down_conv(x);  // [B, C, ceil(H/2), ceil(W/2)]
    skips.push_back(x);
  }
  return x;
}

MidBlock2DCrossAttnImpl::MidBlock2DCrossAttnImpl(int64_t channels, int64_t heads, int64_t transformer_layers,
                                                 double output_scale, const BlockSettings& s) {
  auto resnets = torch::nn::ModuleList(), attentions = torch::nn::ModuleList();
  for (int j = 0; j < 2; ++j) {
    resnets_.push_back(std::make_shared<ResnetBlock2DImpl>(channels, channels, s, output_scale));
    resnets->push_back(resnets_.back());
  }
  attentions_.push_back(std::make_shared<Transformer2DModelImpl>(channels, heads, transformer_layers, s));
  attentions->push_back(attentions_.back());
  register_module("attentions", attentions);
  register_module("resnets", resnets);
}

// Mirrors diffusers UNetMidBlock2DCrossAttn.forward.
torch::Tensor MidBlock2DCrossAttnImpl::forward(torch::Tensor x, const torch::Tensor& temb_act,
                                               const torch::Tensor& context) {
  x = resnets_[0]->forward(x, temb_act);
  x = attentions_[0]->forward(x, context);
  return resnets_[1]->forward(x, temb_act);
}

UpBlock2DImpl::UpBlock2DImpl(int64_t in, int64_t prev_out, int64_t out, int64_t layers, bool with_attention,
                             int64_t heads, int64_t transformer_layers, bool add_upsample, const BlockSettings& s) {
  BlockLayers block{resnets_, attentions_, with_attention};
  for (int64_t j = 0; j < layers; ++j) {
    const int64_t skip_ch = j == layers - 1 ? in : out;
    const int64_t res_in = j == 0 ? prev_out : out;
    block.add(res_in + skip_ch, out, heads, transformer_layers, s);
  }
  block.register_in(*this);
  if (add_upsample) {
    up_conv = conv2d(out, out, 3);
    register_module("upsamplers", torch::nn::ModuleList(conv_holder(up_conv)));
  }
}

// Mirrors diffusers CrossAttnUpBlock2D.forward / UpBlock2D.forward and Upsample2D (nearest).
torch::Tensor UpBlock2DImpl::forward(torch::Tensor x, const torch::Tensor& temb_act, const torch::Tensor& context,
                                     std::vector<torch::Tensor>& skips, const std::vector<int64_t>& upsample_size) {
  for (size_t j = 0; j < resnets_.size(); ++j) {
    auto skip = std::move(skips.back());
    skips.pop_back();
    x = resnets_[j]->forward(torch::cat({x, skip}, 1), temb_act);  // [B, C + C_skip, H, W]
    if (!attentions_.empty()) x = attentions_[j]->forward(x, context);
  }
  if (up_conv) {
    std::vector<int64_t> size = upsample_size;
    if (size.empty()) size = {2 * x.size(2), 2 * x.size(3)};
    x = up_conv(at::upsample_nearest2d(x, size));  // [B, C, 2H, 2W]
  }
  return x;
}

}  // namespace tinv
