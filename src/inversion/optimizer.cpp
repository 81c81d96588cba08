// AdamW and SphereAdam (see optimizer.h).
#include "inversion/optimizer.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"

namespace tinv {

RowOptimizer::RowOptimizer(torch::Tensor param, const char* name) : param_(std::move(param)), name_(name) {
  exp_avg_ = torch::zeros_like(param_, torch::MemoryFormat::Preserve);
  exp_avg_sq_ = torch::zeros_like(param_, torch::MemoryFormat::Preserve);
}

void RowOptimizer::check_grad(const torch::Tensor& grad) const {
  TINV_CHECK(grad.sizes() == param_.sizes(), name_, "gradient ", grad.sizes(), " does not match the parameter ",
             param_.sizes());
}

void RowOptimizer::load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps) {
  TINV_CHECK(exp_avg.sizes() == param_.sizes() && exp_avg_sq.sizes() == param_.sizes(), name_, "saved optimizer state ",
             exp_avg.sizes(), " does not match the parameter ", param_.sizes());
  TINV_CHECK(steps >= 0, name_, "negative step count ", steps);
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg);
  exp_avg_sq_.copy_(exp_avg_sq);
  step_ = steps;
}

AdamW::AdamW(torch::Tensor param, AdamWOptions opts) : RowOptimizer(std::move(param), "AdamW"), opts_(opts) {}

// Mirrors torch/optim/adamw.py `_single_tensor_adamw` (amsgrad=False, maximize=False).
void AdamW::step(const torch::Tensor& grad, double lr) {
  check_grad(grad);
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

template <typename Fn>
torch::Tensor SphereAdam::per_part(const torch::Tensor& x, Fn fn) const {
  if (widths_.size() == 1) return fn(x);  // [n, 1], broadcasts as it is
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (int64_t w : widths_) {
    parts.push_back(fn(x.narrow(1, offset, w)).expand({x.size(0), w}));
    offset += w;
  }
  return torch::cat(parts, 1);  // [n, d]
}

SphereAdam::SphereAdam(torch::Tensor param, const torch::Tensor& norms, SphereOptions opts, std::vector<int64_t> widths)
    : RowOptimizer(std::move(param), "--optimizer sphere"), opts_(opts), widths_(std::move(widths)) {
  TINV_CHECK(param_.dim() == 2, name_, "rows must be [n, d], got ", param_.sizes());
  if (widths_.empty()) widths_ = {param_.size(1)};
  int64_t total = 0;
  for (int64_t w : widths_) {
    TINV_CHECK(w > 0, name_, "part widths must be positive");
    total += w;
  }
  TINV_CHECK(total == param_.size(1), name_, "part widths sum to ", total, ", the rows have ", param_.size(1),
             " columns");
  const int64_t parts = static_cast<int64_t>(widths_.size());
  const bool shape_ok = norms.dim() == 1
                            ? parts == 1 && norms.size(0) == param_.size(0)
                            : norms.dim() == 2 && norms.size(0) == param_.size(0) && norms.size(1) == parts;
  TINV_CHECK(shape_ok, name_, "rows ", param_.sizes(), " in ", parts, " part(s) and norms ", norms.sizes(),
             " disagree");
  torch::NoGradGuard no_grad;
  norms_ = norms.to(param_.device(), param_.scalar_type()).reshape({param_.size(0), parts});  // [n, parts]
  TINV_CHECK(norms_.gt(0).all().item<bool>() && norms_.isfinite().all().item<bool>(), name_,
             "every fixed norm must be a positive number");
  int64_t part = 0;
  full_norms_ = per_part(param_, [&](const torch::Tensor&) { return norms_.narrow(1, part++, 1); });
  auto own = per_part(param_, [](const torch::Tensor& x) { return x.norm(2, {1}, /*keepdim=*/true); });
  TINV_CHECK(own.gt(0).all().item<bool>(), name_, "an initial row is zero: it has no direction");
  mu_ = param_ / own;               // [n, d] initial directions
  param_.copy_(mu_ * full_norms_);  // on the sphere of radius r_i
}

// Riemannian Adam (Becigneul & Ganea, ICLR 2019; as geoopt's RiemannianAdam for a manifold
// embedded in R^d: elementwise second moment) on each part's sphere.
void SphereAdam::step(const torch::Tensor& grad, double lr) {
  check_grad(grad);
  torch::NoGradGuard no_grad;
  ++step_;
  auto dot = [](const torch::Tensor& x) { return x.sum(1, /*keepdim=*/true); };
  auto u = param_ / full_norms_;  // [n, d] current directions
  auto g = grad;
  if (opts_.vmf_kappa > 0) g = g - (opts_.vmf_kappa / full_norms_) * mu_;  // d/de of -kappa mu.e/r
  auto rg = g - per_part(g * u, dot) * u;                                  // tangent projection
  exp_avg_.lerp_(rg, 1 - opts_.beta1);
  exp_avg_sq_.mul_(opts_.beta2).addcmul_(rg, rg, 1 - opts_.beta2);
  const double bias_correction1 = 1 - std::pow(opts_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1 - std::pow(opts_.beta2, static_cast<double>(step_));
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias_correction2)).add_(opts_.eps);
  auto moved = param_ - (lr / bias_correction1) * exp_avg_ / denom;  // [n, d]
  // Retraction: back onto the sphere; in float64 so the norm holds to rounding of float32.
  auto m64 = moved.to(torch::kFloat64);
  auto retracted = m64 * (full_norms_.to(torch::kFloat64) /
                          per_part(m64, [](const torch::Tensor& x) { return x.norm(2, {1}, /*keepdim=*/true); }));
  param_.copy_(retracted);
  auto u2 = param_ / full_norms_;
  exp_avg_.sub_(per_part(exp_avg_ * u2, dot) * u2);  // transport by projection
}

}  // namespace tinv
