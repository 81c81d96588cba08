// Euler (Karras et al. 2022, Algorithm 2 with s_churn = 0), mirroring diffusers 0.25
// EulerDiscreteScheduler, plus the sigma schedule shared with Euler ancestral.
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "schedulers/sampler_math.h"

namespace tinv::sched {

void euler_schedule(const SchedulerConfig& cfg, const NoiseSchedule& schedule, int64_t steps, torch::Tensor* timesteps,
                    torch::Tensor* sigmas) {
  std::vector<double> t =
      spaced_timesteps(*cfg.timestep_spacing, cfg.num_train_timesteps, steps, cfg.steps_offset, false);
  for (auto& v : t) v = static_cast<float>(v);                               // numpy builds them in float32
  const std::vector<float> table = train_sigmas(schedule.alphas_cumprod());  // ascending in t
  std::vector<double> s = np_interp(t, {table.begin(), table.end()});
  if (cfg.use_karras_sigmas) {
    const auto log_table = log_of(table);
    s = karras_sigmas(cfg.sigma_min.value_or(s.back()), cfg.sigma_max.value_or(s.front()), steps);
    for (size_t i = 0; i < s.size(); ++i) t[i] = sigma_to_t(s[i], log_table);
  }
  torch::Tensor sig = to_float_tensor(s);  // [steps]
  if (cfg.timestep_type == "continuous" && cfg.prediction_type == "v_prediction")
    *timesteps = 0.25 * sig.log();
  else
    *timesteps = to_float_tensor(t);
  *sigmas = torch::cat({sig, torch::zeros({1})});  // [steps + 1]
}

double euler_init_noise_sigma(const SchedulerConfig& cfg, const torch::Tensor& sigmas) {
  const double max_sigma = sigmas.max().item<float>();
  if (*cfg.timestep_spacing == "linspace" || *cfg.timestep_spacing == "trailing") return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1);
}

torch::Tensor euler_x0(const torch::Tensor& out, const torch::Tensor& x, double sigma,
                       const std::string& prediction_type) {
  if (prediction_type == "epsilon") return x - sigma * out;
  if (prediction_type == "sample") return out;
  if (prediction_type == "v_prediction") return out * (-sigma / std::sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
  throw Error("sampler", "unknown prediction_type '" + prediction_type + "'");
}

void EulerSamplerBase::set_timesteps(int64_t steps) {
  check_steps(steps);
  requested_steps_ = steps;
  euler_schedule(cfg_, schedule_, steps, &timesteps_, &sigmas_);
  init_noise_sigma_ = euler_init_noise_sigma(cfg_, sigmas_);
}

torch::Tensor EulerSamplerBase::scale_model_input(const torch::Tensor& x, int64_t i) const {
  check_index(i);
  const double sigma = sigmas_[i].item<float>();
  return x / std::sqrt(sigma * sigma + 1);
}

namespace {

class Euler : public EulerSamplerBase {
 public:
  explicit Euler(const SchedulerConfig& cfg) : EulerSamplerBase(cfg) {}
  std::string name() const override { return "euler"; }

  torch::Tensor step(const torch::Tensor& out, int64_t i, const torch::Tensor& x, const NoiseSource&) override {
    check_index(i);
    const double sigma = sigmas_[i].item<float>(), sigma_next = sigmas_[i + 1].item<float>();
    auto x0 = euler_x0(out, x, sigma, cfg_.prediction_type);
    auto derivative = (x - x0) / sigma;  // dx/dsigma
    return x + derivative * (sigma_next - sigma);
  }
};

}  // namespace

std::unique_ptr<Sampler> make_euler(const SchedulerConfig& cfg) { return std::make_unique<Euler>(cfg); }

}  // namespace tinv::sched
