// AutoencoderKL: the Stable Diffusion VAE (mirrors diffusers 0.25 `AutoencoderKL`).
//
//   tinv::AutoencoderKL vae = tinv::load_vae_folder("sd15/vae");   // frozen, eval mode
//   torch::NoGradGuard no_grad;
//   tinv::Posterior post = vae->encode(image);        // image [B, 3, H, W] in [-1, 1]
//   torch::Tensor z = post.sample(seed) * vae->config().scaling_factor;     // [B, 4, H/8, W/8]
//   torch::Tensor x = vae->decode(z / vae->config().scaling_factor);        // [B, 3, H, W]
//
// Parameters are registered under the diffusers key names (`encoder.down_blocks.0.resnets.0.
// conv1.weight`, `decoder.mid_block.attentions.0.to_q.weight`, `quant_conv.bias`, ...), so a
// diffusers `vae/diffusion_pytorch_model.safetensors` loads with a strict walk over names.
// LDM single-file weights (`first_stage_model.*`) are converted by io/convert_vae.h first.
//
// Sizes: the encoder downsamples by 2 per block except the last (pad right/bottom by one, then a
// stride-2 3x3 conv), so any H, W >= 2 per stage works as in diffusers (odd sizes give
// floor(H/2) per stage); decode upsamples exactly by 2 per stage.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/safetensors.h"

namespace tinv {

// diffusers `AutoencoderKL` config.json. Defaults are Stable Diffusion 1.x.
struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  std::vector<std::string> down_block_types = std::vector<std::string>(4, "DownEncoderBlock2D");
  std::vector<std::string> up_block_types = std::vector<std::string>(4, "UpDecoderBlock2D");
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  std::string act_fn = "silu";
  int64_t sample_size = 512;
  double scaling_factor = 0.18215;
  bool force_upcast = true;
  bool mid_block_add_attention = true;
  bool use_quant_conv = true;  // diffusers >= 0.28 may set these false
  bool use_post_quant_conv = true;

  // Reads and validates every field (unknown fields are ignored); throws tinv::Error
  // "<file>: field '<name>' ..." for the first bad field.
  static VaeConfig from_json(const JsonConfig& json);
  // Throws tinv::Error(where, "field '<name>' ...") unless every field is usable.
  void validate(const std::string& where) const;
  static VaeConfig sd15();  // sample_size 512
  static VaeConfig sd21();  // same network, sample_size 768
  static VaeConfig sdxl();  // same network, sample_size 1024, scaling_factor 0.13025
  // Spatial downsampling factor between image and latent: 2^(blocks - 1) (8 for SD).
  int64_t downscale() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

// Diagonal Gaussian over latents (diffusers `DiagonalGaussianDistribution`).
struct Posterior {
  torch::Tensor mean;    // [B, latent, h, w]
  torch::Tensor logvar;  // [B, latent, h, w], clamped to [-30, 20]

  torch::Tensor std() const;  // exp(0.5 * logvar)
  torch::Tensor mode() const { return mean; }
  // mean + std * eps with eps ~ N(0, 1) drawn from `generator` (default: the global one).
  torch::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
  // Same with a fresh CPU generator seeded with `seed` (reproducible across runs).
  torch::Tensor sample(uint64_t seed) const;
};

// The encoder and decoder (diffusers `Encoder` / `Decoder` with their ResnetBlock2D,
// UNetMidBlock2D, DownEncoderBlock2D and UpDecoderBlock2D) are defined in vae.cpp.
class VaeEncoderImpl;
class VaeDecoderImpl;

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  // Validates cfg (throws tinv::Error naming the bad field) and builds randomly initialised
  // weights.
  explicit AutoencoderKLImpl(const VaeConfig& cfg);

  // image [B, in_channels, H, W] in [-1, 1] -> posterior over [B, latent, H/f, W/f]
  // (encoder + quant_conv, split into mean and logvar). Throws on a wrong rank, channel
  // count, or a size too small to downsample.
  Posterior encode(const torch::Tensor& image);
  // latents [B, latent, h, w], UNSCALED (divide by scaling_factor first) -> [B, out, h*f, w*f]
  // (post_quant_conv + decoder), not clamped.
  torch::Tensor decode(const torch::Tensor& latents);
  const VaeConfig& config() const { return cfg_; }

 private:
  VaeConfig cfg_;
  std::shared_ptr<VaeEncoderImpl> encoder_;  // registered as "encoder"
  std::shared_ptr<VaeDecoderImpl> decoder_;  // registered as "decoder"
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

// Builds the model from a diffusers `vae/` folder: config.json plus
// diffusion_pytorch_model[.fp16].safetensors (or a sharded .safetensors.index.json). Legacy
// names are normalised (normalize_diffusers_vae) before the strict load. The result is frozen
// (no parameter requires grad), in eval mode, float32 on CPU.
AutoencoderKL load_vae_folder(const std::string& dir);
// Builds the model from LDM weights (`first_stage_model.` already stripped) with `cfg`
// (e.g. infer_vae_config or a diffusers config). `source` names the file in errors.
AutoencoderKL load_vae_ldm(const StateDict& ldm_vae, const VaeConfig& cfg, const std::string& source);

}  // namespace tinv
