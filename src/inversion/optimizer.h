// AdamW over one tensor, exactly PyTorch's torch.optim.AdamW (amsgrad=False, single-tensor
// path): decoupled weight decay p *= 1 - lr*wd, then the Adam update with bias corrections.
//
//   tinv::AdamW opt(rows, {/*lr*/ 5e-3});   // rows: [n, d] float32, updated in place
//   opt.step(grad, lr);                       // one update with this step's learning rate
//
// Its state (exp_avg, exp_avg_sq, step) is plain tensors so checkpoints can save and restore it.
#pragma once
#include <torch/types.h>

namespace tinv {

struct AdamWOptions {
  double lr = 5e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double weight_decay = 1e-2;
  double eps = 1e-8;
};

class AdamW {
 public:
  AdamW(torch::Tensor param, AdamWOptions opts);
  // One update of param with `grad` (same shape) at learning rate `lr`. Not tracked by autograd.
  void step(const torch::Tensor& grad, double lr);

  const AdamWOptions& options() const { return opts_; }
  int64_t steps() const { return step_; }
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  // Restores a saved state (shapes must match the parameter; throws tinv::Error otherwise).
  void load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps);

 private:
  torch::Tensor param_, exp_avg_, exp_avg_sq_;
  AdamWOptions opts_;
  int64_t step_ = 0;
};

}  // namespace tinv
