// AutoencoderKL, mirroring diffusers 0.25 (models/autoencoders/autoencoder_kl.py, vae.py,
// resnet.py, unet_2d_blocks.py, attention_processor.py). Module names are the diffusers keys.
#include "models/vae.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"
#include "io/state_dict.h"
#include "models/convert_vae.h"
#include "nn/attention_ops.h"

namespace tinv {

namespace nn = torch::nn;

namespace {

constexpr double kEps = 1e-6;  // every VAE GroupNorm (resnets, attention, conv_norm_out)

// Under no_grad (the usual case: the VAE is frozen) activations are applied in place on fresh
// temporaries, which halves the peak memory of the full-resolution decoder stages.
bool inplace_ok() { return !torch::GradMode::is_enabled(); }

torch::Tensor act(torch::Tensor x) { return inplace_ok() ? torch::silu_(x) : torch::silu(x); }  // silu

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? k / 2 : pad));
}

nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return nn::GroupNorm(nn::GroupNormOptions(groups, channels).eps(kEps).affine(true));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// VaeConfig

VaeConfig VaeConfig::from_json(const JsonConfig& json) {
  if (json.has("_class_name") && json.require<std::string>("_class_name") != "AutoencoderKL")
    json.fail("_class_name", "is '" + json.require<std::string>("_class_name") + "', expected 'AutoencoderKL'");
  VaeConfig c;
  c.in_channels = json.get<int64_t>("in_channels", c.in_channels);
  c.out_channels = json.get<int64_t>("out_channels", c.out_channels);
  c.latent_channels = json.get<int64_t>("latent_channels", c.latent_channels);
  // diffusers' own defaults for absent fields are a 1-block VAE of 64 channels
  c.block_out_channels = json.get<std::vector<int64_t>>("block_out_channels", {64});
  c.down_block_types = json.get<std::vector<std::string>>("down_block_types", {"DownEncoderBlock2D"});
  c.up_block_types = json.get<std::vector<std::string>>("up_block_types", {"UpDecoderBlock2D"});
  c.layers_per_block = json.get<int64_t>("layers_per_block", 1);
  c.norm_num_groups = json.get<int64_t>("norm_num_groups", 32);
  c.act_fn = json.get<std::string>("act_fn", c.act_fn);
  if (json.has("sample_size") && json.json().at("sample_size").is_array()) {
    auto hw = json.require<std::vector<int64_t>>("sample_size");
    if (hw.empty()) json.fail("sample_size", "is an empty list");
    c.sample_size = hw[0];
  } else {
    c.sample_size = json.get<int64_t>("sample_size", 32);
  }
  c.scaling_factor = json.get<double>("scaling_factor", c.scaling_factor);
  c.force_upcast = json.get<bool>("force_upcast", c.force_upcast);
  c.mid_block_add_attention = json.get<bool>("mid_block_add_attention", c.mid_block_add_attention);
  c.use_quant_conv = json.get<bool>("use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = json.get<bool>("use_post_quant_conv", c.use_post_quant_conv);
  c.validate(json.source());
  return c;
}

void VaeConfig::validate(const std::string& where) const {
  auto fail = [&](const std::string& field, const std::string& msg) {
    throw Error(where, "field '" + field + "' " + msg);
  };
  if (in_channels < 1) fail("in_channels", str_cat("must be >= 1, got ", in_channels));
  if (out_channels < 1) fail("out_channels", str_cat("must be >= 1, got ", out_channels));
  if (latent_channels < 1) fail("latent_channels", str_cat("must be >= 1, got ", latent_channels));
  if (layers_per_block < 1) fail("layers_per_block", str_cat("must be >= 1, got ", layers_per_block));
  if (norm_num_groups < 1) fail("norm_num_groups", str_cat("must be >= 1, got ", norm_num_groups));
  const size_t n = block_out_channels.size();
  if (n < 1 || n > 8) fail("block_out_channels", str_cat("must list 1 to 8 blocks, got ", n));
  for (size_t i = 0; i < n; ++i) {
    if (block_out_channels[i] < 1)
      fail("block_out_channels", str_cat("entry ", i, " must be >= 1, got ", block_out_channels[i]));
    if (block_out_channels[i] % norm_num_groups != 0)
      fail("block_out_channels", str_cat("entry ", i, " (", block_out_channels[i],
                                         ") is not divisible by norm_num_groups (", norm_num_groups, ")"));
  }
  auto check_types = [&](const char* field, const std::vector<std::string>& types, const char* want) {
    if (types.size() != n) fail(field, str_cat("has ", types.size(), " entries but block_out_channels has ", n));
    for (size_t i = 0; i < n; ++i)
      if (types[i] != want) fail(field, str_cat("entry ", i, " is '", types[i], "', only '", want, "' is supported"));
  };
  check_types("down_block_types", down_block_types, "DownEncoderBlock2D");
  check_types("up_block_types", up_block_types, "UpDecoderBlock2D");
  if (act_fn != "silu" && act_fn != "swish") fail("act_fn", "is '" + act_fn + "', only 'silu' is supported");
  if (sample_size < 1) fail("sample_size", str_cat("must be >= 1, got ", sample_size));
  if (!(scaling_factor > 0.0) || !std::isfinite(scaling_factor))
    fail("scaling_factor", str_cat("must be a positive number, got ", scaling_factor));
}

VaeConfig VaeConfig::sd15() { return VaeConfig{}; }

VaeConfig VaeConfig::sdxl() {
  VaeConfig c;
  c.sample_size = 1024;
  c.scaling_factor = 0.13025;
  c.force_upcast = true;
  return c;
}

VaeConfig VaeConfig::sd21() {
  VaeConfig c;
  c.sample_size = 768;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Building blocks (defined here so that the header stays small).

// diffusers `ResnetBlock2D(temb_channels=None, eps=1e-6, output_scale_factor=1)`.
class VaeResnetImpl : public nn::Module {
 public:
  VaeResnetImpl(int64_t in, int64_t out, int64_t groups) {
    norm1 = register_module("norm1", group_norm(groups, in));
    conv1 = register_module("conv1", conv(in, out, 3));
    norm2 = register_module("norm2", group_norm(groups, out));
    conv2 = register_module("conv2", conv(out, out, 3));
    if (in != out) conv_shortcut = register_module("conv_shortcut", conv(in, out, 1));
  }
  // x [B, in, H, W] -> [B, out, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = conv1(act(norm1(x)));  // [B, out, H, W]
    h = conv2(act(norm2(h)));       // dropout is identity at inference
    auto skip = conv_shortcut.is_empty() ? x : conv_shortcut(x);
    return inplace_ok() ? h.add_(skip) : h + skip;
  }

 private:
  nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(VaeResnet);

// diffusers `Attention` as UNetMidBlock2D builds it for the VAE: heads = 1 (attention_head_dim
// = C), group norm first, biased q/k/v/out projections, residual connection, rescale 1.
class VaeAttentionImpl : public nn::Module {
 public:
  VaeAttentionImpl(int64_t c, int64_t groups) {
    group_norm_ = register_module("group_norm", group_norm(groups, c));
    to_q = register_module("to_q", nn::Linear(c, c));
    to_k = register_module("to_k", nn::Linear(c, c));
    to_v = register_module("to_v", nn::Linear(c, c));
    to_out = register_module("to_out", nn::ModuleList(nn::Linear(c, c)));  // to_out.1 = dropout
  }
  // x [B, C, H, W] -> [B, C, H, W] (AttnProcessor2_0 on a 4-D input)
  torch::Tensor forward(const torch::Tensor& x) {
    const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    auto t = group_norm_(x).view({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
    auto q = to_q(t).unsqueeze(1);                                // [B, 1, HW, C]
    auto k = to_k(t).unsqueeze(1);
    auto v = to_v(t).unsqueeze(1);
    t = dot_product_attention(q, k, v).squeeze(1);  // [B, HW, C]
    t = to_out[0]->as<nn::Linear>()->forward(t);
    auto out = t.transpose(1, 2).reshape({b, c, h, w});  // [B, C, H, W]
    return inplace_ok() ? out.add_(x) : out + x;
  }

 private:
  nn::GroupNorm group_norm_{nullptr};
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  nn::ModuleList to_out;
};
TORCH_MODULE(VaeAttention);

// diffusers `UNetMidBlock2D(temb_channels=None)`: resnet, [attention], resnet.
class VaeMidBlockImpl : public nn::Module {
 public:
  VaeMidBlockImpl(int64_t c, int64_t groups, bool add_attention) {
    resnets = register_module("resnets", nn::ModuleList(VaeResnet(c, c, groups), VaeResnet(c, c, groups)));
    if (add_attention) attentions = register_module("attentions", nn::ModuleList(VaeAttention(c, groups)));
  }
  torch::Tensor forward(torch::Tensor x) {  // [B, C, h, w] -> same
    x = resnets[0]->as<VaeResnet>()->forward(x);
    if (!attentions.is_empty()) x = attentions[0]->as<VaeAttention>()->forward(x);
    return resnets[1]->as<VaeResnet>()->forward(x);
  }

 private:
  nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// diffusers `Downsample2D(use_conv=True, padding=0)`: pad (0,1,0,1) then 3x3 stride-2 conv.
class VaeDownsampleImpl : public nn::Module {
 public:
  explicit VaeDownsampleImpl(int64_t c) { conv_ = register_module("conv", conv(c, c, 3, 2, 0)); }
  torch::Tensor forward(const torch::Tensor& x) {  // [B, C, H, W] -> [B, C, H/2, W/2] (floor)
    return conv_(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  }

 private:
  nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(VaeDownsample);

// diffusers `Upsample2D(use_conv=True)`: nearest x2 then 3x3 conv.
class VaeUpsampleImpl : public nn::Module {
 public:
  explicit VaeUpsampleImpl(int64_t c) { conv_ = register_module("conv", conv(c, c, 3)); }
  torch::Tensor forward(const torch::Tensor& x) {  // [B, C, H, W] -> [B, C, 2H, 2W]
    return conv_(torch::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}));
  }

 private:
  nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(VaeUpsample);

// DownEncoderBlock2D (resnets + optional downsamplers.0) and UpDecoderBlock2D (resnets +
// optional upsamplers.0): `layers` resnets, the first changing in -> out channels.
class VaeBlockImpl : public nn::Module {
 public:
  VaeBlockImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, bool down, bool resample) : down_(down) {
    resnets = register_module("resnets", nn::ModuleList());
    for (int64_t j = 0; j < layers; ++j) resnets->push_back(VaeResnet(j == 0 ? in : out, out, groups));
    if (resample && down) samplers = register_module("downsamplers", nn::ModuleList(VaeDownsample(out)));
    if (resample && !down) samplers = register_module("upsamplers", nn::ModuleList(VaeUpsample(out)));
  }
  torch::Tensor forward(torch::Tensor x) {  // [B, in, H, W] -> [B, out, H', W']
    for (auto& r : *resnets) x = r->as<VaeResnet>()->forward(x);
    if (samplers.is_empty()) return x;
    return down_ ? samplers[0]->as<VaeDownsample>()->forward(x) : samplers[0]->as<VaeUpsample>()->forward(x);
  }

 private:
  bool down_;
  nn::ModuleList resnets{nullptr}, samplers{nullptr};
};
TORCH_MODULE(VaeBlock);

// diffusers `Encoder(double_z=True)`.
class VaeEncoderImpl : public nn::Module {
 public:
  explicit VaeEncoderImpl(const VaeConfig& cfg) {
    const auto& ch = cfg.block_out_channels;
    const int64_t g = cfg.norm_num_groups, n = static_cast<int64_t>(ch.size());
    conv_in = register_module("conv_in", conv(cfg.in_channels, ch[0], 3));
    down_blocks = register_module("down_blocks", nn::ModuleList());
    for (int64_t i = 0; i < n; ++i)
      down_blocks->push_back(VaeBlock(i == 0 ? ch[0] : ch[i - 1], ch[i], cfg.layers_per_block, g,
                                      /*down=*/true, /*resample=*/i + 1 < n));
    mid_block = register_module("mid_block", VaeMidBlock(ch.back(), g, cfg.mid_block_add_attention));
    conv_norm_out = register_module("conv_norm_out", group_norm(g, ch.back()));
    conv_out = register_module("conv_out", conv(ch.back(), 2 * cfg.latent_channels, 3));
  }
  // x [B, in, H, W] -> [B, 2*latent, H/f, W/f]
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = conv_in(x);  // [B, ch0, H, W]
    for (auto& blk : *down_blocks) h = blk->as<VaeBlock>()->forward(h);
    h = mid_block(h);  // [B, ch_last, H/f, W/f]
    return conv_out(act(conv_norm_out(h)));
  }

 private:
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::ModuleList down_blocks{nullptr};
  VaeMidBlock mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
};

// diffusers `Decoder`: up blocks run over reversed(block_out_channels).
class VaeDecoderImpl : public nn::Module {
 public:
  explicit VaeDecoderImpl(const VaeConfig& cfg) {
    std::vector<int64_t> rev(cfg.block_out_channels.rbegin(), cfg.block_out_channels.rend());
    const int64_t g = cfg.norm_num_groups, n = static_cast<int64_t>(rev.size());
    conv_in = register_module("conv_in", conv(cfg.latent_channels, rev[0], 3));
    mid_block = register_module("mid_block", VaeMidBlock(rev[0], g, cfg.mid_block_add_attention));
    up_blocks = register_module("up_blocks", nn::ModuleList());
    for (int64_t i = 0; i < n; ++i)
      up_blocks->push_back(VaeBlock(i == 0 ? rev[0] : rev[i - 1], rev[i], cfg.layers_per_block + 1, g, /*down=*/false,
                                    /*resample=*/i + 1 < n));
    conv_norm_out = register_module("conv_norm_out", group_norm(g, rev.back()));
    conv_out = register_module("conv_out", conv(rev.back(), cfg.out_channels, 3));
  }
  // z [B, latent, h, w] -> [B, out, h*f, w*f]
  torch::Tensor forward(const torch::Tensor& z) {
    auto h = mid_block(conv_in(z));  // [B, ch_last, h, w]
    for (auto& blk : *up_blocks) h = blk->as<VaeBlock>()->forward(h);
    return conv_out(act(conv_norm_out(h)));  // [B, out, h*f, w*f]
  }

 private:
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  VaeMidBlock mid_block{nullptr};
  nn::ModuleList up_blocks{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
};

// ---------------------------------------------------------------------------------------------
// AutoencoderKL

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& cfg) : cfg_(cfg) {
  cfg_.validate("VaeConfig");
  encoder_ = register_module("encoder", std::make_shared<VaeEncoderImpl>(cfg_));
  decoder_ = register_module("decoder", std::make_shared<VaeDecoderImpl>(cfg_));
  const int64_t z = cfg_.latent_channels;
  if (cfg_.use_quant_conv) quant_conv = register_module("quant_conv", conv(2 * z, 2 * z, 1));
  if (cfg_.use_post_quant_conv) post_quant_conv = register_module("post_quant_conv", conv(z, z, 1));
}

Posterior AutoencoderKLImpl::encode(const torch::Tensor& image) {
  TINV_CHECK(image.dim() == 4 && image.size(1) == cfg_.in_channels, "AutoencoderKL::encode", "expected an image [B, ",
             cfg_.in_channels, ", H, W], got ", shape_str(image.sizes().vec()));
  // Each Downsample2D needs at least 2 pixels (pad to 3, then a 3x3 stride-2 conv).
  for (int64_t s = 0, h = image.size(2), w = image.size(3); s + 1 < (int64_t)cfg_.block_out_channels.size();
       ++s, h /= 2, w /= 2)
    TINV_CHECK(h >= 2 && w >= 2, "AutoencoderKL::encode", "image ", image.size(2), "x", image.size(3),
               " is too small for ", cfg_.block_out_channels.size() - 1, " downsampling stages");
  auto moments = encoder_->forward(image);  // [B, 2*latent, h, w]
  if (!quant_conv.is_empty()) moments = quant_conv(moments);
  auto parts = moments.chunk(2, 1);
  return Posterior{parts[0], parts[1].clamp(-30.0, 20.0)};  // [B, latent, h, w] each
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) {
  TINV_CHECK(latents.dim() == 4 && latents.size(1) == cfg_.latent_channels, "AutoencoderKL::decode",
             "expected latents [B, ", cfg_.latent_channels, ", h, w], got ", shape_str(latents.sizes().vec()));
  auto z = post_quant_conv.is_empty() ? latents : post_quant_conv(latents);
  return decoder_->forward(z);  // [B, out, h*f, w*f]
}

torch::Tensor Posterior::std() const { return torch::exp(0.5 * logvar); }

torch::Tensor Posterior::sample(std::optional<at::Generator> generator) const {
  auto eps =
      generator ? at::randn(mean.sizes(), *generator, mean.options()) : torch::randn(mean.sizes(), mean.options());
  return mean + std() * eps;
}

torch::Tensor Posterior::sample(uint64_t seed) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto eps = at::randn(mean.sizes(), gen, mean.options().device(torch::kCPU)).to(mean.device());
  return mean + std() * eps;
}

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

AutoencoderKL finish(const StateDict& sd, const VaeConfig& cfg, const std::string& source) {
  AutoencoderKL vae(cfg);
  load_state_dict(*vae, sd, source);
  freeze(*vae);
  vae->eval();
  return vae;
}

}  // namespace

AutoencoderKL load_vae_folder(const std::string& dir) {
  const auto cfg = VaeConfig::from_json(JsonConfig::load(join_path(dir, "config.json")));
  std::string weights;
  for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                           "diffusion_pytorch_model.safetensors.index.json"}) {
    if (file_exists(join_path(dir, name))) {
      weights = join_path(dir, name);
      break;
    }
  }
  TINV_CHECK(!weights.empty(), dir,
             "no diffusion_pytorch_model[.fp16].safetensors (or sharded index) "
             "found; .bin weights are not supported, convert them to safetensors");
  StateDict sd = load_state_dict_file(weights);
  normalize_diffusers_vae(sd, weights);
  return finish(sd, cfg, weights);
}

AutoencoderKL load_vae_ldm(const StateDict& ldm_vae, const VaeConfig& cfg, const std::string& source) {
  return finish(convert_ldm_vae(ldm_vae, cfg, source), cfg, source);
}

}  // namespace tinv
