// The optimisers of the learned rows, over one [n, d] tensor updated in place:
//
//   AdamW       exactly PyTorch's torch.optim.AdamW (amsgrad=False, single-tensor path):
//               decoupled weight decay p *= 1 - lr*wd, then the Adam update with bias corrections.
//   SphereAdam  norm-fixed direction optimisation (`--optimizer sphere`, docs/INVERSION.md):
//               row i stays on the sphere of radius r_i; Riemannian Adam (gradient projected
//               onto the tangent space, Adam step, retraction by rescaling to r_i, first moment
//               transported by projection), with an optional von Mises-Fisher prior.
//
//   tinv::AdamW opt(rows, {/*lr*/ 5e-3});      // rows: [n, d] float32
//   opt.step(grad, lr);                          // one update with this step's learning rate
//   tinv::SphereAdam s(rows, norms, {});         // rows rescaled to norms [n] at construction
//   tinv::SphereAdam xl(rows, norms2, {}, {h1, h2});  // SDXL: each encoder's part on its sphere
//   s.step(grad, lr);                            // every row keeps its norm
//
// Their state (exp_avg, exp_avg_sq, step) is plain tensors so checkpoints can save and restore it.
#pragma once
#include <torch/types.h>

#include <vector>

namespace tinv {

// What the trainer and the checkpoints see of an optimiser.
class RowOptimizer {
 public:
  virtual ~RowOptimizer() = default;
  // One update of the parameter with `grad` (same shape) at learning rate `lr`. Not tracked by
  // autograd. Throws tinv::Error for a gradient of another shape.
  virtual void step(const torch::Tensor& grad, double lr) = 0;

  int64_t steps() const { return step_; }
  const torch::Tensor& exp_avg() const { return exp_avg_; }        // [n, d]
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }  // [n, d]
  // Restores a saved state (shapes must match the parameter; throws tinv::Error otherwise).
  void load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps);

 protected:
  RowOptimizer(torch::Tensor param, const char* name);
  void check_grad(const torch::Tensor& grad) const;
  torch::Tensor param_, exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
  const char* name_;
};

struct AdamWOptions {
  double lr = 5e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double weight_decay = 1e-2;
  double eps = 1e-8;
};

class AdamW : public RowOptimizer {
 public:
  AdamW(torch::Tensor param, AdamWOptions opts);
  void step(const torch::Tensor& grad, double lr) override;
  const AdamWOptions& options() const { return opts_; }

 private:
  AdamWOptions opts_;
};

struct SphereOptions {
  double beta1 = 0.9, beta2 = 0.999;  // Adam's moment decays (as AdamW's)
  double eps = 1e-8;
  double vmf_kappa = 0;  // > 0: von Mises-Fisher prior toward each row's initial direction
};

class SphereAdam : public RowOptimizer {
 public:
  // param [n, d]: rescaled in place to `norms` along its own directions, which are also the
  // prior's mean directions. `widths` splits the columns into parts, each on its own sphere
  // (SDXL rows [n, h1 + h2]: widths {h1, h2}); empty means one part of all d columns. norms is
  // [n] for one part or [n, parts], every one > 0. Throws tinv::Error on bad shapes, widths that
  // do not sum to d, a zero (part of a) row or a norm <= 0.
  SphereAdam(torch::Tensor param, const torch::Tensor& norms, SphereOptions opts, std::vector<int64_t> widths = {});
  // For each part e of a row (norm r, direction u = e/r, prior direction mu), with g = grad + the
  // prior's gradient -kappa mu / r:
  //   rg = g - (g.u) u;  m = b1 m + (1-b1) rg;  v = b2 v + (1-b2) rg^2   (elementwise)
  //   e' = e - lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps);  e <- r e'/|e'|;  m <- m - (m.u') u'
  void step(const torch::Tensor& grad, double lr) override;
  const SphereOptions& options() const { return opts_; }
  const torch::Tensor& norms() const { return norms_; }          // [n, parts]
  const torch::Tensor& prior_directions() const { return mu_; }  // [n, d], unit parts
  const std::vector<int64_t>& widths() const { return widths_; }

 private:
  // [n, d]: fn([n, w] part) -> [n, 1], broadcast back over each part's columns.
  template <typename Fn>
  torch::Tensor per_part(const torch::Tensor& x, Fn fn) const;
  SphereOptions opts_;
  std::vector<int64_t> widths_;
  torch::Tensor norms_, full_norms_, mu_;  // [n, parts], [n, d], [n, d]
};

}  // namespace tinv
