#include "schedulers/noise_schedule.h"

#include <cmath>

#include "common/error.h"

namespace tinv {
namespace {

// diffusers betas_for_alpha_bar (cosine, max_beta 0.999), computed in float64.
torch::Tensor cosine_betas(int64_t n) {
  auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
  std::vector<double> betas(n);
  for (int64_t i = 0; i < n; ++i) {
    double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
    betas[i] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
  }
  return torch::tensor(betas, torch::kFloat64).to(torch::kFloat32);
}

// diffusers rescale_zero_terminal_snr: shift and scale sqrt(abar) so that the last is 0.
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  auto abar_sqrt = torch::cumprod(1.0 - betas, 0).sqrt();
  auto a0 = abar_sqrt[0].clone(), aT = abar_sqrt[-1].clone();
  abar_sqrt = (abar_sqrt - aT) * (a0 / (a0 - aT));
  auto abar = abar_sqrt.pow(2);
  auto alphas = torch::cat({abar.slice(0, 0, 1), abar.slice(0, 1) / abar.slice(0, 0, -1)});
  return 1.0 - alphas;
}

}  // namespace

NoiseSchedule::NoiseSchedule(const SchedulerConfig& cfg) {
  cfg.validate("scheduler config");
  const int64_t n = cfg.num_train_timesteps;
  if (!cfg.trained_betas.empty()) {
    betas_ = torch::tensor(cfg.trained_betas, torch::kFloat64).to(torch::kFloat32);
  } else if (cfg.beta_schedule == "linear") {
    betas_ = torch::linspace(cfg.beta_start, cfg.beta_end, n, torch::kFloat32);
  } else if (cfg.beta_schedule == "scaled_linear") {
    betas_ = torch::linspace(std::sqrt(cfg.beta_start), std::sqrt(cfg.beta_end), n, torch::kFloat32).pow(2);
  } else {  // squaredcos_cap_v2 (validated)
    betas_ = cosine_betas(n);
  }
  if (cfg.rescale_betas_zero_snr) betas_ = rescale_zero_terminal_snr(betas_);
  alphas_ = 1.0 - betas_;
  alphas_cumprod_ = torch::cumprod(alphas_, 0);
}

double NoiseSchedule::alpha_bar(int64_t t) const {
  TINV_CHECK(t >= 0 && t < num_train_timesteps(), "noise schedule", "timestep ", t, " outside [0, ",
             num_train_timesteps(), ")");
  return alphas_cumprod_[t].item<double>();
}

std::pair<torch::Tensor, torch::Tensor> NoiseSchedule::coefficients(const torch::Tensor& t,
                                                                    const torch::Tensor& like) const {
  TINV_CHECK(t.dim() == 1 && !t.is_floating_point(), "add_noise", "timesteps must be an integer tensor [B], got ",
             t.sizes());
  TINV_CHECK(like.dim() >= 1 && like.size(0) == t.size(0), "add_noise", "timesteps [", t.size(0),
             "] do not match the batch of ", like.sizes());
  auto tc = t.to(torch::kCPU, torch::kInt64);
  if (tc.numel() > 0) {
    int64_t lo = tc.min().item<int64_t>(), hi = tc.max().item<int64_t>();
    TINV_CHECK(lo >= 0 && hi < num_train_timesteps(), "add_noise", "timesteps must lie in [0, ", num_train_timesteps(),
               "), got ", lo, "..", hi);
  }
  auto abar = alphas_cumprod_.index_select(0, tc).to(like.device(), like.scalar_type());  // [B]
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = t.size(0);
  return {abar.sqrt().reshape(shape), (1.0 - abar).sqrt().reshape(shape)};  // [B, 1, ...]
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                       const torch::Tensor& t) const {
  auto [a, s] = coefficients(t, x0);
  return a * x0 + s * noise;
}

torch::Tensor NoiseSchedule::velocity(const torch::Tensor& x0, const torch::Tensor& noise,
                                      const torch::Tensor& t) const {
  auto [a, s] = coefficients(t, x0);
  return a * noise - s * x0;
}

torch::Tensor NoiseSchedule::target(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                                    const std::string& prediction_type) const {
  if (prediction_type == "epsilon") return noise;
  if (prediction_type == "v_prediction") return velocity(x0, noise, t);
  if (prediction_type == "sample") return x0;
  throw Error("noise schedule", "unknown prediction_type '" + prediction_type + "'");
}

}  // namespace tinv
