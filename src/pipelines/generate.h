// Text-to-image generation with Stable Diffusion (mirrors diffusers 0.25
// StableDiffusionPipeline.__call__): prompt and negative prompt through the tokenizer and text
// encoder, classifier-free guidance on one batched [uncond; cond] UNet call per step, the
// sampler loop, VAE decode. SDXL models follow StableDiffusionXLPipeline.__call__: both text
// encoders (text/sdxl_text.h), the pooled prompt and the time_ids (original size, crop, target
// size) as added UNet conditions, and, with force_zeros_for_empty_prompt, an empty negative
// prompt given as zeros rather than encoded.
//
//   tinv::StableDiffusion sd = tinv::load_stable_diffusion("models/sd15");
//   tinv::ExtraTokens extra = tinv::add_embeddings(sd, {"cat-toy.pt"});   // trigger "cat-toy"
//   tinv::GenerateOptions opts;
//   opts.prompt = "a photo of cat-toy on a beach";
//   opts.sampler = "euler_a"; opts.steps = 25; opts.seed = 42; opts.batch = 4;
//   tinv::GenerateResult r = tinv::generate(sd, extra, opts);   // r.images [4, 3, 512, 512]
//
// Determinism: image i of a batch starts from latents drawn on the CPU by a generator seeded
// with seed + i, and every later random draw of that image (ancestral samplers, DDIM eta > 0)
// continues from the same generator; so image i equals a batch-1 run with seed + i, and the
// same seed on the same device gives the same image.
//
// Every entry point throws tinv::Error naming the offending option (`--steps`, `--cfg`, ...) or
// file; nothing is written by this module.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/stable_diffusion.h"
#include "schedulers/sampler.h"
#include "text/extra_tokens.h"

namespace tinv {

class Progress;

struct GenerateOptions {
  std::string prompt, negative_prompt;
  std::string sampler = "default";  // a sampler_names() entry, or "default" (the model's)
  int64_t steps = 30;
  double cfg = 7.5;  // classifier-free guidance scale; 1 = conditional prediction only
  double eta = 0.0;  // DDIM stochasticity
  uint64_t seed = 0;
  int64_t width = 0, height = 0;  // 0: the model default (vae sample_size)
  int64_t batch = 1;
  bool progress = true;  // progress bar on stderr
  // SDXL micro-conditioning (time_ids), in pixels. 0: the generated image's size (and crop 0).
  // Sizes must be multiples of 8; crops >= 0.
  int64_t original_width = 0, original_height = 0;
  int64_t crop_top = 0, crop_left = 0;
  int64_t target_width = 0, target_height = 0;
  // SDXL: encode an empty negative prompt even when the model says force_zeros_for_empty_prompt.
  bool encode_empty_negative = false;
};

// The text conditioning of a prompt batch: states [B, 77, D]; SDXL also the pooled, projected
// prompt [B, P] of text_encoder_2 (undefined for SD1/SD2).
struct Conditioning {
  torch::Tensor states;
  torch::Tensor pooled;
};

struct GenerateResult {
  torch::Tensor images;                       // [B, 3, H, W] float32 in [0, 1], CPU
  std::vector<uint64_t> seeds;                // seed of each image (seed + i)
  std::string parameters;                     // A1111 "parameters" text of image 0 (also for a grid)
  std::vector<std::string> image_parameters;  // the same per image (its own Seed)
  bool truncated = false;                     // prompt or negative prompt cut to 77 tokens
};

// Checks the options that do not depend on the model: known sampler, 1 <= steps <= 1000,
// finite cfg >= 0, finite eta >= 0, width/height 0 or positive multiples of 8, 1 <= batch <= 64,
// SDXL original/target sizes 0 or positive multiples of 8 (`--original-width`, ...), crops >= 0.
// Throws tinv::Error("--steps", "...") etc.: one line naming the option.
void validate(const GenerateOptions& opts);

// Loads every embedding in `files` (any format of io/embeddings.h, width checked against the
// text encoder) and adds its triggers to sd.tokenizer (SDXL: clip_l/clip_g rows, to both
// tokenizers; SD1/SD2 files are refused there, SDXL files on SD1/SD2). Throws tinv::Error naming
// the file.
ExtraTokens add_embeddings(StableDiffusion& sd, const std::vector<std::string>& files);

// Adds `trigger` for learned rows [n, d] to `extra` through sd's tokenizer(s); SDXL rows are
// [n, h1 + h2], clip_l's columns then clip_g's. Call it on a copy of the model (`view = sd`,
// modules shared) to keep sd's tokenizers untouched. Throws tinv::Error as ExtraTokens does.
void add_rows_trigger(StableDiffusion& sd, ExtraTokens& extra, const std::string& trigger, const torch::Tensor& rows);

// Text-encoder states for `ids` [B, 77] int64 (ids >= the text vocabulary index extra.table()).
// Returns [B, 77, D] on sd.device in sd.dtype.
torch::Tensor encode_ids(StableDiffusion& sd, const ExtraTokens& extra, const torch::Tensor& ids);
// Tokenises `prompt` (triggers expanded; sd.tokenizer must hold extra's tokens) and encodes it:
// [1, 77, D]. *truncated (optional) is set when tokens beyond 77 were dropped.
torch::Tensor encode_prompt(StableDiffusion& sd, const ExtraTokens& extra, const std::string& prompt,
                            bool* truncated = nullptr);
// SDXL: ids [B, 77] of tokenizer and ids_2 of tokenizer_2 -> prompt_embeds and pooled.
Conditioning encode_ids_xl(StableDiffusion& sd, const ExtraTokens& extra, const torch::Tensor& ids,
                           const torch::Tensor& ids_2);
// Any family: the prompt through the tokenizer(s) and text encoder(s), [1, 77, D] (+ pooled).
Conditioning encode_text(StableDiffusion& sd, const ExtraTokens& extra, const std::string& prompt,
                         bool* truncated = nullptr);
// SDXL time_ids [1, 6] = (original h, original w, crop top, crop left, target h, target w) for
// an image of width x height, the options' zeros filled from that size.
torch::Tensor sdxl_time_ids(const GenerateOptions& opts, int64_t width, int64_t height);

// The sampler loop with classifier-free guidance. `latents` [B, C, h, w] already scaled by
// sampler.init_noise_sigma(); cond/uncond [1 or B, L, D]. sampler.set_timesteps() must have
// been called. Each step runs the UNet once on [uncond; cond] (2B items) and combines
// out_uncond + cfg (out_cond - out_uncond); cfg == 1 runs the conditional half only. The
// sampler maths runs in float32 on the latents' device; the UNet in sd.dtype. `progress`
// (optional) is advanced after each step. Returns the final latents, float32 [B, C, h, w].
torch::Tensor denoise(StableDiffusion& sd, Sampler& sampler, const torch::Tensor& latents, const torch::Tensor& cond,
                      const torch::Tensor& uncond, double cfg, const NoiseSource& noise, Progress* progress = nullptr);
// The same with pooled vectors and time_ids [1 or B, 6] for SDXL (required there).
torch::Tensor denoise(StableDiffusion& sd, Sampler& sampler, const torch::Tensor& latents, const Conditioning& cond,
                      const Conditioning& uncond, double cfg, const NoiseSource& noise, Progress* progress,
                      const torch::Tensor& time_ids);

// VAE decode of sampler latents: latents / scaling_factor -> decoder. Returns the decoder
// output float32 [B, 3, H, W] on the latents' device, NOT clamped (range about [-1, 1]).
torch::Tensor decode_latents(StableDiffusion& sd, const torch::Tensor& latents);
// clamp((x + 1) / 2, 0, 1) on the CPU: decoder output -> images in [0, 1].
torch::Tensor to_unit_images(const torch::Tensor& decoded);

// Noise for a batch whose item i draws from its own CPU generator seeded with seeds[i]: the
// returned source yields [B, ...] noise, item i from generator i (shape [1, ...] per draw).
NoiseSource per_item_noise(const std::vector<uint64_t>& seeds);

// A1111 sampler label ("DDIM", "Euler a", "DPM++ 2M", "PLMS", "Euler") for a tinv name.
std::string a1111_sampler_name(const std::string& tinv_name);

// The whole pipeline. Width/height must be multiples of the VAE's downscale factor.
GenerateResult generate(StableDiffusion& sd, const ExtraTokens& extra, const GenerateOptions& opts);

}  // namespace tinv
