// DDIM (Song et al. 2020), mirroring diffusers 0.25 DDIMScheduler.step with eta,
// set_alpha_to_one, clip_sample and every prediction type (use_clipped_model_output = false).
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "schedulers/sampler_math.h"

namespace tinv::sched {
namespace {

class Ddim : public Sampler {
 public:
  Ddim(const SchedulerConfig& cfg, double eta) : Sampler(cfg), eta_(eta) {
    TINV_CHECK(eta >= 0, "ddim", "eta must be >= 0, got ", eta);
    final_alpha_cumprod_ = *cfg_.set_alpha_to_one ? 1.0 : schedule_.alpha_bar(0);
  }
  std::string name() const override { return "ddim"; }

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    requested_steps_ = steps;
    timesteps_ = to_int_tensor(
        spaced_timesteps(*cfg_.timestep_spacing, cfg_.num_train_timesteps, steps, cfg_.steps_offset, true));
  }

  torch::Tensor step(const torch::Tensor& out, int64_t i, const torch::Tensor& x, const NoiseSource& noise) override {
    check_index(i);
    const int64_t t = timesteps_[i].item<int64_t>();
    const int64_t prev_t = t - cfg_.num_train_timesteps / requested_steps_;
    const double a_t = schedule_.alpha_bar(t);
    const double a_prev = prev_t >= 0 ? schedule_.alpha_bar(prev_t) : final_alpha_cumprod_;
    const double b_t = 1 - a_t, b_prev = 1 - a_prev;

    torch::Tensor x0, eps;  // predicted original sample and noise
    ddpm_x0_eps(out, x, a_t, cfg_.prediction_type, &x0, &eps);
    if (*cfg_.clip_sample) x0 = x0.clamp(-cfg_.clip_sample_range, cfg_.clip_sample_range);

    // sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))   (eq. 16)
    const double variance = (b_prev / b_t) * (1 - a_t / a_prev);
    const double std_dev = eta_ * std::sqrt(variance);
    auto direction = std::sqrt(1 - a_prev - std_dev * std_dev) * eps;  // "direction pointing to x_t"
    auto prev = std::sqrt(a_prev) * x0 + direction;
    if (eta_ > 0) prev = prev + std_dev * draw(noise, out);
    return prev;
  }

 private:
  double eta_;
  double final_alpha_cumprod_;
};

}  // namespace

std::unique_ptr<Sampler> make_ddim(const SchedulerConfig& cfg, double eta) { return std::make_unique<Ddim>(cfg, eta); }

}  // namespace tinv::sched
