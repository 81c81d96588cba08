// The training noise schedule (diffusers' betas / alphas_cumprod) and forward noising.
//
//   tinv::NoiseSchedule sched(tinv::SchedulerConfig::sd15());
//   auto noisy  = sched.add_noise(x0, noise, t);                     // t: int64 [B]
//   auto target = sched.target(x0, noise, t, cfg.prediction_type);   // eps, v, or x0
//
// Mirrors the `__init__` of diffusers' schedulers: betas in float32 (scaled_linear is
// torch.linspace(sqrt(beta_start), sqrt(beta_end), N, float32)**2; squaredcos_cap_v2 is
// computed in float64 and rounded), alphas = 1 - betas, alphas_cumprod = cumprod(alphas).
#pragma once
#include <torch/types.h>

#include <string>

#include "schedulers/scheduler_config.h"

namespace tinv {

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const SchedulerConfig& cfg);

  int64_t num_train_timesteps() const { return betas_.size(0); }
  const torch::Tensor& betas() const { return betas_; }                    // float32 [N]
  const torch::Tensor& alphas() const { return alphas_; }                  // float32 [N]
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  // float32 [N]
  // alphas_cumprod[t] as a double (t in [0, N), else throws).
  double alpha_bar(int64_t t) const;

  // x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise. x0, noise: [B, ...]; t: int64 [B] in [0, N).
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) const;
  // v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (diffusers get_velocity).
  torch::Tensor velocity(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) const;
  // The training target for a prediction type: epsilon -> noise, v_prediction -> velocity,
  // sample -> x0. Throws on an unknown type.
  torch::Tensor target(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                       const std::string& prediction_type) const;

 private:
  // sqrt(abar_t) and sqrt(1 - abar_t) gathered for t and shaped [B, 1, ...] like `like`.
  std::pair<torch::Tensor, torch::Tensor> coefficients(const torch::Tensor& t, const torch::Tensor& like) const;
  torch::Tensor betas_, alphas_, alphas_cumprod_;
};

}  // namespace tinv
