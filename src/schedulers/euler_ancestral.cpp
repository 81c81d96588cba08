// Euler ancestral (k-diffusion sample_euler_ancestral, eta = 1), mirroring diffusers 0.25
// EulerAncestralDiscreteScheduler; sigmas as for Euler (Karras when use_karras_sigmas is set).
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "schedulers/sampler_math.h"

namespace tinv::sched {
namespace {

class EulerAncestral : public EulerSamplerBase {
 public:
  explicit EulerAncestral(const SchedulerConfig& cfg) : EulerSamplerBase(cfg) {}
  std::string name() const override { return "euler_a"; }

  torch::Tensor step(const torch::Tensor& out, int64_t i, const torch::Tensor& x, const NoiseSource& noise) override {
    check_index(i);
    const double sigma = sigmas_[i].item<float>(), sigma_to = sigmas_[i + 1].item<float>();
    auto x0 = euler_x0(out, x, sigma, cfg_.prediction_type);
    // Split the step to sigma_to into a deterministic part down to sigma_down and fresh noise
    // of scale sigma_up, with sigma_down^2 + sigma_up^2 = sigma_to^2.
    const double sigma_up = std::sqrt(sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma));
    const double sigma_down = std::sqrt(std::max(0.0, sigma_to * sigma_to - sigma_up * sigma_up));
    auto derivative = (x - x0) / sigma;
    auto prev = x + derivative * (sigma_down - sigma);
    return prev + draw(noise, out) * sigma_up;
  }
};

}  // namespace

std::unique_ptr<Sampler> make_euler_ancestral(const SchedulerConfig& cfg) {
  return std::make_unique<EulerAncestral>(cfg);
}

}  // namespace tinv::sched
