// What the SD and SDXL 'ti_train' parity groups share (parity_ti_train.cpp,
// parity_sdxl_pipeline.cpp): the fixture cases/ti_train.safetensors opened and checked against
// the model, its per-step inputs as a StepSource, the replay through run_steps and the per-step
// loss case.
#pragma once
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "inversion/trainer.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"

namespace tinv::parity {

// Replays the fixture's per-step inputs (template_index, timesteps, noises; latents).
class FixtureSource : public StepSource {
 public:
  FixtureSource(const SafeTensors& f, const torch::Device& device);
  StepInputs draw(int64_t step) override;
  int64_t steps() const;

 private:
  torch::Tensor template_index_, timesteps_, noises_, latents_;
};

struct TiTrainFixture {
  std::string path;  // dir/cases/ti_train.safetensors
  SafeTensors file;
  std::map<std::string, std::string> md;
  StableDiffusion sd;
  std::vector<std::string> templates, placeholders;
};

// Opens the fixture and the model (SDXL when `xl`) in `dtype`; throws tinv::Error on missing metadata or a
// prediction type other than the model's.
TiTrainFixture open_ti_train(const std::string& dir, const torch::Device& device, bool xl, torch::ScalarType dtype);

// The reference run's trainer options: AdamW lr 5e-3 (or the fixture's lr), betas (0.9, 0.999),
// wd 1e-2, eps 1e-8, constant schedule over `steps`.
TrainerOptions ti_train_options(const TiTrainFixture& fx, int64_t steps);

struct TiTrainReplay {
  std::vector<double> losses;  // loss before each update
  torch::Tensor first_grad;    // gradient of the first step
};
TiTrainReplay replay(InversionTrainer& trainer, FixtureSource& source);

// `name`: the losses against the fixture's, rel 1e-4 per step (kBf16LossRel in bf16).
CaseResult losses_case(const std::string& name, const TiTrainReplay& run, const SafeTensors& f,
                       torch::ScalarType dtype);

}  // namespace tinv::parity
