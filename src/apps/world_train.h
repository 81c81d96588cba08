// Training tinv's embedded world models with tinv's own code: the VAE (AutoencoderKL), the text
// encoder (CLIP architecture) jointly with the denoiser (UNet2DConditionModel), and the captioner
// (BLIP), on the procedural world of world.h; then the export of fp16 diffusers / BLIP folders.
//
//   tinv::world::TrainOptions o;
//   o.part = tinv::world::TrainPart::kVae; o.work = "runs/world"; o.steps = 1500;
//   tinv::world::train_part(o);                 // resumes from runs/world/vae.ckpt.safetensors
//   tinv::world::export_models("runs/world", "models");   // models/world-sd, models/world-blip
//
// Work folder:  tokenizer/ (the world BPE), blip-vocab.txt, <part>.ckpt.safetensors (weights,
// AdamW moments, step), <part>.log.csv (step, loss, lr, seconds), latents.safetensors (the
// diffusion training set, encoded once by the trained VAE).
//
// Reproducibility: weights start from torch::manual_seed(seed); step k draws its data and noise
// from generators seeded by (seed, part, k) only, so a run interrupted and resumed from a
// checkpoint continues exactly as an uninterrupted one. The recipe (sizes, schedule) is in
// world_configs() and docs/WORLD.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/device.h"
#include "models/blip.h"
#include "models/unet.h"
#include "models/vae.h"
#include "schedulers/scheduler_config.h"
#include "text/clip_text_model.h"
#include "world/world.h"

namespace tinv::world {

// The architectures of the world models (the recipe's fixed sizes).
struct WorldConfigs {
  VaeConfig vae;
  UNetConfig unet;
  ClipTextConfig text;
  SchedulerConfig scheduler;
  BlipConfig blip;
};
// clip_vocab: the world BPE's size; blip_vocab: tokens in blip-vocab.txt ([DEC] and [ENC] follow).
WorldConfigs world_configs(int64_t clip_vocab, int64_t blip_vocab);

// The part `tinv world train` trains: vae, decoder (fine-tune, encoder frozen), diffusion
// (text encoder + UNet), captioner.
enum class TrainPart { kVae, kDecoder, kDiffusion, kCaptioner };
// "vae" | "decoder" | "diffusion" | "captioner": the command line's text and checkpoint names.
std::string to_string(TrainPart part);
// The inverse of to_string; throws tinv::Error("world train", "unknown part ...") for other text.
TrainPart parse_train_part(const std::string& name);

// The diffusion part's UNet target: the noise (epsilon) or v (v_prediction).
enum class Prediction { kEpsilon, kVPrediction };
// "epsilon" | "v_prediction": the --prediction text, and the scheduler config's prediction_type.
std::string to_string(Prediction prediction);
// The inverse of to_string; throws tinv::Error("--prediction", ...) for other text.
Prediction parse_prediction(const std::string& name);

struct TrainOptions {
  TrainPart part = TrainPart::kVae;
  std::filesystem::path work;  // work folder (created)
  int64_t steps = 0;           // total optimisation steps (a resumed run continues up to this)
  int64_t stop_at = 0;         // > 0: stop after this step (the schedule still spans `steps`)
  int64_t batch = 0;           // 0: the part's default
  double lr = 0;               // 0: the part's default peak learning rate
  uint64_t seed = 0;
  int64_t save_every = 100;
  int64_t dataset = 16384;                           // diffusion: scenes in the latent training set
  Prediction prediction = Prediction::kVPrediction;  // diffusion: the UNet's target
  std::filesystem::path init;  // diffusion, captioner: start from this checkpoint's weights when there is none yet
  SceneRules rules;            // the world's scene rules (--unnamed-dot; default: world v2)
  DeviceChoice device;         // std::nullopt: auto (CUDA when available)
  bool progress = true;
};

// Trains one part up to options.steps, checkpointing every save_every steps and at the end.
// Throws tinv::Error for bad options, a missing prerequisite (diffusion needs a trained VAE),
// or a checkpoint of another configuration.
void train_part(const TrainOptions& options);

// Writes <out>/world-sd (diffusers) and <out>/world-blip (BLIP) with fp16 weights from the work
// folder's checkpoints. Each file is written atomically.
void export_models(const std::string& work, const std::string& out);

// The BLIP WordPiece vocabulary of the world: [PAD] [UNK] [CLS] [SEP] [MASK], ",", the prompt
// words, every caption word, then letters and "##" letters for any other text.
std::string blip_vocab_text();

}  // namespace tinv::world
