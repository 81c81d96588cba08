// Samplers (diffusers 0.25 schedulers) behind one interface.
//
//   auto sampler = tinv::make_sampler("euler_a", cfg);        // or "default": cfg.class_name
//   sampler->set_timesteps(25);
//   auto x = torch::randn(shape) * sampler->init_noise_sigma();
//   auto noise = tinv::seeded_noise(1234);                     // for the stochastic samplers
//   for (int64_t i = 0; i < sampler->num_steps(); ++i) {
//     auto eps = unet(sampler->scale_model_input(x, i), sampler->timestep(i), text);
//     x = sampler->step(eps, i, x, noise);
//   }
//
// Steps are addressed by index into timesteps(), not by timestep value (values repeat in PNDM).
// Samplers with history (PNDM, DPM-Solver++ 2M) must be stepped in order 0, 1, 2, ...; a
// step out of order throws. set_timesteps() resets all state.
//
// Names: ddim (DDIMScheduler), euler (EulerDiscreteScheduler), euler_a
// (EulerAncestralDiscreteScheduler), dpmpp_2m (DPMSolverMultistepScheduler), pndm
// (PNDMScheduler). Every sampler honours prediction_type epsilon, v_prediction and sample.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "schedulers/noise_schedule.h"
#include "schedulers/scheduler_config.h"

namespace tinv {

// Returns standard-normal noise shaped like (and on the device/dtype of) its argument.
using NoiseSource = std::function<torch::Tensor(const torch::Tensor& like)>;
// Noise drawn on the CPU from a torch generator seeded with `seed` (same on every device).
NoiseSource seeded_noise(uint64_t seed);
// Hands out noises[0], noises[1], ... in order (shape of each must match); throws when
// exhausted. Used to replay reference noise.
NoiseSource noise_sequence(const torch::Tensor& noises);

class Sampler {
 public:
  virtual ~Sampler() = default;

  // Computes the inference timesteps (and sigmas) for `steps` steps and resets the state.
  // Throws tinv::Error on steps < 1 or steps > num_train_timesteps.
  virtual void set_timesteps(int64_t steps) = 0;
  // int64 (DDIM, PNDM, DPM-Solver) or float32 (Euler, Euler ancestral), as in diffusers.
  virtual const torch::Tensor& timesteps() const { return timesteps_; }
  // float32 [num_steps + 1] for the sigma-based samplers; undefined for DDIM and PNDM.
  const torch::Tensor& sigmas() const { return sigmas_; }
  int64_t num_steps() const { return timesteps_.defined() ? timesteps_.size(0) : 0; }
  // timesteps()[step_index] as the value the denoiser is conditioned on.
  double timestep(int64_t step_index) const;
  // Standard deviation of the starting latents (multiply unit noise by it).
  virtual double init_noise_sigma() const { return init_noise_sigma_; }
  // The denoiser's input at step_index (Euler samplers divide by sqrt(sigma^2 + 1)).
  virtual torch::Tensor scale_model_input(const torch::Tensor& x, int64_t step_index) const {
    check_index(step_index);
    return x;
  }
  // One denoising step from x at step_index given the denoiser's output; returns the sample
  // for step_index + 1. `noise` is required by stochastic samplers (euler_a, ddim with eta > 0,
  // sde-dpmsolver*) and ignored by the others; a missing one throws.
  virtual torch::Tensor step(const torch::Tensor& model_output, int64_t step_index, const torch::Tensor& x,
                             const NoiseSource& noise = nullptr) = 0;
  // The tinv name ("ddim", ...).
  virtual std::string name() const = 0;
  const SchedulerConfig& config() const { return cfg_; }
  const NoiseSchedule& schedule() const { return schedule_; }

 protected:
  // `cfg` already resolved with SchedulerConfig::for_class.
  explicit Sampler(const SchedulerConfig& cfg) : cfg_(cfg), schedule_(cfg) {}
  // Throws unless set_timesteps() was called and step_index is within [0, num_steps()).
  void check_index(int64_t step_index) const;
  // Throws unless 1 <= steps <= num_train_timesteps.
  void check_steps(int64_t steps) const;
  // noise(like), checked for presence and shape.
  torch::Tensor draw(const NoiseSource& noise, const torch::Tensor& like) const;

  SchedulerConfig cfg_;
  NoiseSchedule schedule_;
  torch::Tensor timesteps_, sigmas_;
  double init_noise_sigma_ = 1.0;
  int64_t requested_steps_ = 0;  // the argument of the last set_timesteps
};

// Creates a sampler by tinv name, or "default" for the one named by cfg.class_name. `eta` is
// DDIM's stochasticity (0 = deterministic). Throws tinv::Error listing the known names.
std::unique_ptr<Sampler> make_sampler(const std::string& name, const SchedulerConfig& cfg, double eta = 0.0);
// The tinv sampler names, in a stable order.
std::vector<std::string> sampler_names();
// diffusers class name -> tinv name ("DDIMScheduler" -> "ddim"); throws if unknown.
std::string sampler_name_for_class(const std::string& diffusers_class);

}  // namespace tinv
