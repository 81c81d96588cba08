// Loading a whole Stable Diffusion model (tokenizer, text encoder, UNet, VAE, scheduler config)
// from what users have on disk: a diffusers pipeline folder, or a single-file LDM checkpoint
// (.safetensors) of SD 1.x or 2.x, or of SDXL (Stability's `conditioner.embedders.*` layout).
//
// SDXL (family "sdxl"; a folder whose model_index.json names text_encoder_2, or a single file
// with conditioner.embedders.0/1) adds tokenizer_2 and text_encoder_2 (CLIPTextModelWithProjection);
// the UNet's cross-attention width is the sum of both encoders' widths and it takes the
// pooled text and time_ids as added conditions (models/unet.h).
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
  std::string preset = "auto";  // single files: auto | sd15 | sd21 | sdxl
  std::string config_dir;       // single files: diffusers folder providing configs/tokenizer
  std::string tokenizer_dir;    // overrides where the tokenizer is read from
  std::string prediction_type;  // overrides the scheduler's: epsilon | v_prediction
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype of the weights
  bool with_tokenizer = true;                 // false: skip (e.g. `tinv info` on a single file)
};

struct StableDiffusion {
  std::string source;                      // path given
  std::string format;                      // "diffusers" | "single_file"
  std::string family;                      // "sd1" | "sd2" | "sdxl"
  std::optional<ClipTokenizer> tokenizer;  // absent only with with_tokenizer = false / random
  ClipTextConfig text_config;
  // SDXL only: the second tokenizer (pads with "!") and text encoder (with projection).
  std::optional<ClipTokenizer> tokenizer_2;
  ClipTextConfig text_config_2;
  ClipTextModel text_encoder_2{nullptr};
  bool force_zeros_for_empty_prompt = false;  // model_index.json (SDXL pipelines: true)
  UNetConfig unet_config;
  VaeConfig vae_config;
  SchedulerConfig scheduler;
  ClipTextModel text_encoder{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  std::map<std::string, std::string> file_dtypes;  // component -> dtypes in the file ("F16 x 686")
  std::string fingerprint;                         // stable 64-bit hex id of the weights' layout
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  // The VAE's compute dtype: dtype, except float32 for an SDXL VAE with force_upcast when
  // dtype is float16 (the SDXL VAE overflows in fp16; diffusers upcasts it the same way).
  torch::ScalarType vae_dtype = torch::kFloat32;

  bool is_xl() const { return family == "sdxl"; }
};

// Throws tinv::Error naming the file/field on anything missing, malformed or mismatched.
StableDiffusion load_stable_diffusion(const std::string& path, const SdLoadOptions& opts = {});

// "sd1", "sd2" or "sdxl" from a single file's tensors (SDXL: conditioner.embedders.*; then
// cross-attention key width 768 vs 1024; other widths: SD2 if the text encoder is OpenCLIP-named).
std::string detect_single_file_family(const StateDict& sd, const std::string& source);

// A model with random weights built from presets or configs, for tests and benchmarks.
// `text_2` (with_projection) makes it SDXL; the UNet must then be text_time.
StableDiffusion random_stable_diffusion(const UNetConfig& unet, const VaeConfig& vae, const ClipTextConfig& text,
                                        uint64_t seed, const std::optional<ClipTextConfig>& text_2 = std::nullopt);

}  // namespace tinv
