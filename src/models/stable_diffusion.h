// Loading a whole Stable Diffusion model (tokenizer, text encoder, UNet, VAE, scheduler config)
// from what users have on disk: a diffusers pipeline folder, or a single-file LDM checkpoint
// (.safetensors) of SD 1.x or 2.x.
//
//   tinv::SdLoadOptions opts;                       // CPU, float32
//   tinv::StableDiffusion sd = tinv::load_stable_diffusion("models/sd15", opts);
//   auto ids = sd.tokenizer->encode("a photo of a cat").ids;
//
// Single files carry no configs and no tokenizer. Configs come from, in order: an explicit
// diffusers folder (`config_dir`), a named preset (`sd15`, `sd21`), or the tensor shapes (the
// family — SD1 or SD2 — detected from the cross-attention width). The tokenizer comes from
// `tokenizer_dir`, else from `config_dir/tokenizer`, else it is an error.
// Loading is strict: every parameter filled, every shape checked; extra checkpoint entries
// (model_ema.*, alphas_cumprod, betas, position_ids, ...) are ignored.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "models/unet.h"
#include "models/vae.h"
#include "schedulers/scheduler_config.h"
#include "text/clip_text_model.h"
#include "text/clip_tokenizer.h"

namespace tinv {

struct SdLoadOptions {
  std::string preset = "auto";   // single files: auto | sd15 | sd21
  std::string config_dir;        // single files: diffusers folder providing configs/tokenizer
  std::string tokenizer_dir;     // overrides where the tokenizer is read from
  std::string prediction_type;   // overrides the scheduler's: epsilon | v_prediction
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype of the weights
  bool with_tokenizer = true;                 // false: skip (e.g. `tinv info` on a single file)
};

struct StableDiffusion {
  std::string source;      // path given
  std::string format;      // "diffusers" | "single_file"
  std::string family;      // "sd1" | "sd2"
  std::optional<ClipTokenizer> tokenizer;  // absent only with with_tokenizer = false / random
  ClipTextConfig text_config;
  UNetConfig unet_config;
  VaeConfig vae_config;
  SchedulerConfig scheduler;
  ClipTextModel text_encoder{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  std::map<std::string, std::string> file_dtypes;  // component -> dtypes in the file ("F16 x 686")
  std::string fingerprint;                          // stable 64-bit hex id of the weights' layout
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};

// Throws tinv::Error naming the file/field on anything missing, malformed or mismatched.
StableDiffusion load_stable_diffusion(const std::string& path, const SdLoadOptions& opts = {});

// "sd1" or "sd2" from a single file's tensors (cross-attention key width 768 vs 1024; other
// widths: SD2 if the text encoder is OpenCLIP-named).
std::string detect_single_file_family(const StateDict& sd, const std::string& source);

// A model with random weights built from presets or configs, for tests and benchmarks.
StableDiffusion random_stable_diffusion(const UNetConfig& unet, const VaeConfig& vae,
                                        const ClipTextConfig& text, uint64_t seed);

}  // namespace tinv
