// Internal: the numpy idioms diffusers' set_timesteps uses, reproduced bit for bit in double
// precision (np.linspace, np.arange, np.round half-to-even, np.interp, Karras sigmas,
// _sigma_to_t), and the per-sampler factories used by make_sampler.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "schedulers/sampler.h"

namespace tinv::sched {

// np.linspace(start, stop, num) (endpoint included, float64).
std::vector<double> np_linspace(double start, double stop, int64_t num);
// np.arange(start, stop, step) for float arguments.
std::vector<double> np_arange(double start, double stop, double step);
// np.round: half to even.
double np_round(double v);
// diffusers' leading / linspace / trailing spacings over n_train, descending (DDIM, Euler):
//   linspace: linspace(0, n_train - 1, steps)[::-1] (rounded when `round_linspace`)
//   leading:  (arange(steps) * (n_train // steps))[::-1] + offset
//   trailing: round(arange(n_train, 0, -n_train / steps)) - 1
std::vector<double> spaced_timesteps(const std::string& spacing, int64_t n_train, int64_t steps, int64_t offset,
                                     bool round_linspace);
// np.interp(x, arange(len(fp)), fp).
std::vector<double> np_interp(const std::vector<double>& x, const std::vector<double>& fp);
// The training sigmas sqrt((1 - abar) / abar), computed in float32 as diffusers does, ascending.
std::vector<float> train_sigmas(const torch::Tensor& alphas_cumprod);
// Karras et al. (2022) rho = 7 ramp from sigma_max down to sigma_min over `steps` values.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps);
// diffusers _sigma_to_t: fractional timestep of `sigma` by log-linear interpolation.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
std::vector<float> log_of(const std::vector<float>& v);

torch::Tensor to_float_tensor(const std::vector<double>& v);  // float32 [n]
torch::Tensor to_int_tensor(const std::vector<double>& v);    // int64 [n]

// Denoised estimate x0 and noise estimate eps from a model output at abar (DDPM form).
void ddpm_x0_eps(const torch::Tensor& out, const torch::Tensor& x, double abar, const std::string& prediction_type,
                 torch::Tensor* x0, torch::Tensor* eps);

std::unique_ptr<Sampler> make_ddim(const SchedulerConfig& cfg, double eta);
std::unique_ptr<Sampler> make_euler(const SchedulerConfig& cfg);
std::unique_ptr<Sampler> make_euler_ancestral(const SchedulerConfig& cfg);
std::unique_ptr<Sampler> make_dpmpp_2m(const SchedulerConfig& cfg);
std::unique_ptr<Sampler> make_pndm(const SchedulerConfig& cfg);

}  // namespace tinv::sched

namespace tinv::sched {
// Euler-family set_timesteps (diffusers EulerDiscreteScheduler 0.25): float32 timesteps spaced
// by the config (linspace not rounded), sigmas interpolated at them (or the Karras ramp with
// fractional timesteps from _sigma_to_t), then a final 0. Continuous v-prediction timesteps
// are 0.25 log(sigma).
void euler_schedule(const SchedulerConfig& cfg, const NoiseSchedule& schedule, int64_t steps, torch::Tensor* timesteps,
                    torch::Tensor* sigmas);
// max sigma (linspace/trailing) or sqrt(max^2 + 1) (leading).
double euler_init_noise_sigma(const SchedulerConfig& cfg, const torch::Tensor& sigmas);
// x0 from the model output at sigma, in the Karras/Euler parameterisation x = x0 + sigma eps.
torch::Tensor euler_x0(const torch::Tensor& out, const torch::Tensor& x, double sigma,
                       const std::string& prediction_type);

// What the Euler samplers share: the sigma schedule and the input scaling x / sqrt(sigma^2 + 1).
class EulerSamplerBase : public Sampler {
 public:
  using Sampler::Sampler;
  void set_timesteps(int64_t steps) override;
  torch::Tensor scale_model_input(const torch::Tensor& x, int64_t i) const override;
};
}  // namespace tinv::sched
