#include "inversion/optimizer.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"

namespace tinv {

AdamW::AdamW(torch::Tensor param, AdamWOptions opts) : param_(std::move(param)), opts_(opts) {
  exp_avg_ = torch::zeros_like(param_, torch::MemoryFormat::Preserve);
  exp_avg_sq_ = torch::zeros_like(param_, torch::MemoryFormat::Preserve);
}

// Mirrors torch/optim/adamw.py `_single_tensor_adamw` (amsgrad=False, maximize=False).
void AdamW::step(const torch::Tensor& grad, double lr) {
  TINV_CHECK(grad.sizes() == param_.sizes(), "AdamW", "gradient ", grad.sizes(),
             " does not match the parameter ", param_.sizes());
  torch::NoGradGuard no_grad;
  ++step_;
  param_.mul_(1 - lr * opts_.weight_decay);
  exp_avg_.lerp_(grad, 1 - opts_.beta1);
  exp_avg_sq_.mul_(opts_.beta2).addcmul_(grad, grad, 1 - opts_.beta2);
  const double bias_correction1 = 1 - std::pow(opts_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1 - std::pow(opts_.beta2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  auto denom = (exp_avg_sq_.sqrt() / bias_correction2_sqrt).add_(opts_.eps);
  param_.addcdiv_(exp_avg_, denom, -step_size);
}

void AdamW::load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps) {
  TINV_CHECK(exp_avg.sizes() == param_.sizes() && exp_avg_sq.sizes() == param_.sizes(), "AdamW",
             "saved optimizer state ", exp_avg.sizes(), " does not match the parameter ",
             param_.sizes());
  TINV_CHECK(steps >= 0, "AdamW", "negative step count ", steps);
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg);
  exp_avg_sq_.copy_(exp_avg_sq);
  step_ = steps;
}

}  // namespace tinv
