// Textual inversion with captioning initialisation: the trainer core (the `tinv invert`
// command built on it is apps/invert.h).
//
//   // The core: learned rows for placeholder tokens, everything else frozen.
//   tinv::InversionTrainer tr(tokenizer, sd.text_encoder, sd.unet, sd.scheduler,
//                             {"<cat_0>", "<cat_1>"}, init_rows, templates, {});
//   tinv::RandomStepSource src(latent_cache, templates.size(), /*batch*/ 1, 1000, /*seed*/ 0);
//   tinv::run_steps(tr, src, /*end*/ 100, [](int64_t k, const tinv::StepResult& r) {});

//
// One step (mirrors diffusers examples/textual_inversion/textual_inversion.py):
//   ids    = tokenizer(template[i].format(placeholder sentence))            [B, 77]
//   states = text_encoder(ids, learned rows)                                [B, 77, D]
//   noisy  = add_noise(latents, noise, t);  pred = unet(noisy, t, states)
//   loss   = mse(pred, noise | velocity by prediction type)                 (before the update)
//   grad   = d loss / d rows (no model weight requires grad) [+ 2 reg_init (rows - start)];
//            optional clip; AdamW update (or SphereAdam: norm-fixed rows, docs/INVERSION.md).
// SDXL (a SecondTextEncoder given): each placeholder gets a row in BOTH encoders. The learned
// rows are one [n, h1 + h2] tensor whose columns [0, h1) feed text_encoder and [h1, h1 + h2)
// text_encoder_2, so ONE optimiser (and one gradient-norm clip) covers both; prompt ids come
// from each tokenizer, states = encode_sdxl_text (text/sdxl_text.h) and the UNet gets the pooled
// prompt and the time_ids as added conditions. SphereAdam then keeps each encoder's part of a
// row on its own sphere.
// Step inputs (template choice, timesteps, noises, latents) come from a StepSource: real
// training draws them from a generator seeded by (seed, step) only, so a resumed run repeats
// an uninterrupted one exactly; the parity check replays a reference run's inputs through the
// same code.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "inversion/lr_schedule.h"
#include "inversion/method.h"
#include "inversion/optimizer.h"
#include "models/unet.h"
#include "schedulers/noise_schedule.h"
#include "schedulers/scheduler_config.h"
#include "text/clip_text_model.h"
#include "text/clip_tokenizer.h"

#include <optional>

namespace tinv {

struct StableDiffusion;  // models/stable_diffusion.h

// What one optimisation step consumes.
struct StepInputs {
  std::vector<int64_t> template_index;  // [B] index into the trainer's templates
  torch::Tensor timesteps;              // int64 [B]
  torch::Tensor noise;                  // [B, C, h, w]
  torch::Tensor latents;                // [B, C, h, w], already scaled by the VAE scaling factor
};

class StepSource {
 public:
  virtual ~StepSource() = default;
  // Inputs of update `step` (0-based). Must depend on `step` only (resume relies on it).
  virtual StepInputs draw(int64_t step) = 0;
};

// Real training: per step, a CPU generator seeded from (seed, step) draws, in this order,
// B cache entries (uniform), B template indices (uniform), B timesteps uniform in
// [t_min, t_max] (torch::randint(t_min, t_max + 1); default [0, N-1]), and the noise.
class RandomStepSource : public StepSource {
 public:
  // latent_cache [M, C, h, w]: one entry per image (and per flipped image with --flip).
  // t_max -1: N - 1. Throws tinv::Error unless 0 <= t_min <= t_max < N.
  RandomStepSource(torch::Tensor latent_cache, int64_t num_templates, int64_t batch, int64_t num_train_timesteps,
                   uint64_t seed, int64_t t_min = 0, int64_t t_max = -1);
  StepInputs draw(int64_t step) override;

 private:
  torch::Tensor cache_;
  int64_t num_templates_, batch_, t_min_, t_max_;
  uint64_t seed_;
};

// A 64-bit seed for draw number `index` of a stream named by `seed` (splitmix64 mixing).
uint64_t derive_seed(uint64_t seed, uint64_t index);

// The fixed evaluation batch of the fixed-input loss (`tinv invert --eval-every`, `tinv study`):
// `pairs` timesteps spread over [0, num_timesteps) ((2i+1) N / 2pairs), noise from a stream of
// its own under `seed`, the first cached latent and the first template for every pair. Unlike
// the raw loss, which is dominated by the random timestep and noise, its loss falls when the
// embedding improves.
StepInputs fixed_eval_inputs(const torch::Tensor& latent_cache, int64_t pairs, int64_t num_timesteps, uint64_t seed);

struct TrainerOptions {
  AdamWOptions adam;  // lr here is unused: the schedule gives each step's lr
  LrSchedule schedule;
  double max_grad_norm = 0;  // > 0: clip the rows' gradient norm (torch clip_grad_norm_)
  // Defined: norm-fixed direction optimisation, SphereAdam instead of AdamW; row i starts at
  // its initial direction scaled to sphere_norms[i] ([n]) and keeps that norm. SDXL: [n, 2],
  // one norm per encoder part of the row (each part on its own sphere; [n] puts the whole row
  // on one).
  torch::Tensor sphere_norms;
  SphereOptions sphere;  // betas, eps, vMF prior weight (used with sphere_norms)
  double reg_init = 0;   // > 0: the objective adds reg_init * sum((rows - start)^2), start =
                         // the rows the trainer starts from
};

// SDXL's second tokenizer and text encoder, and the time_ids of the training images
// ([6] or [1, 6]: (H, W, 0, 0, H, W) for H x W images without crop).
struct SecondTextEncoder {
  ClipTokenizer tokenizer;
  ClipTextModel text_encoder;
  torch::Tensor time_ids;
};

struct StepResult {
  double loss = 0;     // diffusion loss before the update (without the reg_init pull)
  double lr = 0;       // learning rate used for the update
  torch::Tensor grad;  // [n, d] gradient of that loss w.r.t. the rows (before the pull, clipping); SDXL [n, h1+h2]
  bool finite = true;  // false: loss or gradient not finite; no update was made
};

class InversionTrainer {
 public:
  // `tokenizer` is copied and gets `placeholder_tokens` added (ids base_vocab_size + i);
  // init_rows [n, d] (n = number of placeholders, d = text width; SDXL: d = h1 + h2, the
  // concatenation of each encoder's starting rows) start the learned rows (rescaled to
  // options.sphere_norms when those are given). `second` makes it SDXL: its tokenizer gets the
  // same placeholders with the same ids.
  // The placeholder sentence is the tokens joined by spaces. Throws tinv::Error on a
  // placeholder that collides with the vocabulary, a tokenizer/text-encoder vocabulary
  // mismatch, wrong init shapes, an empty template list, or prompts longer than 77 tokens.
  InversionTrainer(const ClipTokenizer& tokenizer, ClipTextModel text_encoder, UNet2DConditionModel unet,
                   const SchedulerConfig& scheduler, const std::vector<std::string>& placeholder_tokens,
                   const torch::Tensor& init_rows, std::vector<std::string> templates, const TrainerOptions& options,
                   std::optional<SecondTextEncoder> second = std::nullopt);

  // Token ids of the filled templates, BOS/EOS/padding: int64 [B, 77] on the CPU.
  torch::Tensor prompt_ids(const std::vector<int64_t>& template_index) const;
  // SDXL: the same from tokenizer_2 (other padding).
  torch::Tensor prompt_ids_2(const std::vector<int64_t>& template_index) const;
  bool is_xl() const { return second_.has_value(); }
  // Columns of the rows that feed text_encoder (h1); the rest feed text_encoder_2 (SDXL).
  int64_t width_1() const { return width_1_; }
  // One optimisation step (update number steps_done()).
  StepResult step(const StepInputs& in);
  // The loss for `in` with the current rows, without gradients or update.
  double loss(const StepInputs& in);

  torch::Tensor embeddings() const;  // [n, d] float32 CPU copy of the learned rows
  // Restores rows, optimizer state and step count (a checkpoint).
  void restore(const torch::Tensor& rows, const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq,
               int64_t steps_done);
  const RowOptimizer& optimizer() const { return *optimizer_; }
  int64_t steps_done() const { return optimizer_->steps(); }
  const std::string& placeholder_sentence() const { return sentence_; }
  const std::vector<std::string>& templates() const { return templates_; }
  const ClipTokenizer& tokenizer() const { return tokenizer_; }

 private:
  torch::Tensor forward_loss(const StepInputs& in);  // scalar float32, graph to rows_
  torch::Tensor ids_of(const ClipTokenizer& tok, const std::vector<int64_t>& template_index) const;

  ClipTokenizer tokenizer_;
  std::optional<SecondTextEncoder> second_;
  int64_t width_1_ = 0;
  ClipTextModel text_encoder_;
  UNet2DConditionModel unet_;
  NoiseSchedule schedule_;
  std::string prediction_type_;
  std::vector<std::string> templates_;
  std::string sentence_;
  TrainerOptions options_;
  torch::Tensor rows_;   // [n, d] float32 leaf on the model's device, requires grad
  torch::Tensor start_;  // [n, d] the rows at construction (target of the reg_init pull)
  std::unique_ptr<RowOptimizer> optimizer_;
};

// ---- a trainer on a loaded model (tinv invert, tinv study) ----

// The rows a run on `sd` starts from for init token ids: start_rows of the text encoder, [n, d];
// SDXL: of each encoder, [n, h1 + h2].
torch::Tensor model_start_rows(StableDiffusion& sd, const std::vector<int64_t>& ids, InitSpace init_space);

// A trainer on sd's text encoder(s), UNet and scheduler for rows starting at `init_rows`: the
// method applied to `topt` (apply_method); SDXL time_ids of square res x res images, no crop.
std::unique_ptr<InversionTrainer> make_trainer(StableDiffusion& sd, const std::vector<std::string>& placeholders,
                                               const torch::Tensor& init_rows, std::vector<std::string> templates,
                                               const MethodOptions& method, TrainerOptions topt, int64_t res);

// Runs updates steps_done() .. end-1, drawing each step's inputs from `source` and calling
// on_step(k, result) after update k (also for a non-finite result, where the loop stops); after
// a finite update the loop also ends when `stop` (optional) returns true (early stopping).
// Returns false when it stopped on a non-finite loss/gradient.
bool run_steps(InversionTrainer& trainer, StepSource& source, int64_t end,
               const std::function<void(int64_t, const StepResult&)>& on_step,
               const std::function<bool()>& stop = nullptr);

}  // namespace tinv
