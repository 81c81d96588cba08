// PNDM (Liu et al. 2022), mirroring diffusers 0.25 PNDMScheduler: Runge-Kutta warm-up steps
// (PRK) unless skip_prk_steps, then linear multistep (PLMS). With skip_prk_steps the timestep
// list repeats its second entry (e.g. 901, 801, 801, 701, ...): the first two model calls form
// a Heun-like step from 901 to 801.
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "schedulers/sampler_math.h"

namespace tinv::sched {
namespace {

class Pndm : public Sampler {
 public:
  explicit Pndm(const SchedulerConfig& cfg) : Sampler(cfg) {
    final_alpha_cumprod_ = *cfg_.set_alpha_to_one ? 1.0 : schedule_.alpha_bar(0);
  }
  std::string name() const override { return "pndm"; }

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    requested_steps_ = steps;
    const int64_t n = cfg_.num_train_timesteps;
    std::vector<double> base = spaced_timesteps(*cfg_.timestep_spacing, n, steps, cfg_.steps_offset, true);
    base = {base.rbegin(), base.rend()};  // ascending, as diffusers' _timesteps
    const int64_t m = static_cast<int64_t>(base.size());
    std::vector<double> prk, plms;
    if (cfg_.skip_prk_steps) {
      // concatenate([_t[:-1], _t[-2:-1], _t[-1:]])[::-1]
      std::vector<double> v(base.begin(), base.end() - 1);
      if (m >= 2) v.push_back(base[m - 2]);
      v.push_back(base[m - 1]);
      plms = {v.rbegin(), v.rend()};
    } else {
      TINV_CHECK(m >= 4, name(), "Runge-Kutta warm-up (skip_prk_steps false) needs >= 4 steps");
      // prk = (_t[-4:].repeat(2) + tile([0, n // steps // 2], 4))[:-1].repeat(2)[1:-1][::-1]
      std::vector<double> r;
      const double half = static_cast<double>(n / steps / 2);
      for (int64_t k = m - 4; k < m; ++k) r.push_back(base[k]), r.push_back(base[k] + half);
      r.pop_back();
      std::vector<double> rr;
      for (double v : r) rr.push_back(v), rr.push_back(v);
      rr = {rr.begin() + 1, rr.end() - 1};
      prk = {rr.rbegin(), rr.rend()};
      plms = {base.begin(), base.end() - 3};
      plms = {plms.rbegin(), plms.rend()};
    }
    std::vector<double> all = prk;
    all.insert(all.end(), plms.begin(), plms.end());
    timesteps_ = to_int_tensor(all);
    num_prk_ = static_cast<int64_t>(prk.size());
    ets_.clear();
    cur_sample_ = torch::Tensor();
    cur_model_output_ = torch::Tensor();
    counter_ = 0;
  }

  torch::Tensor step(const torch::Tensor& out, int64_t i, const torch::Tensor& x, const NoiseSource&) override {
    check_index(i);
    TINV_CHECK(i == counter_, name(), "steps must be taken in order: expected step ", counter_, ", got ", i);
    const int64_t t = timesteps_[i].item<int64_t>();
    auto eps = as_epsilon(out, x, t);
    auto prev = counter_ < num_prk_ ? step_prk(eps, t, x) : step_plms(eps, t, x);
    ++counter_;
    return prev;
  }

 private:
  // The denoiser's output as the noise estimate the multistep formulas combine. v-prediction
  // is converted after combining, in prev_sample(), as diffusers does; `sample` prediction
  // (which diffusers' PNDM refuses) is converted here at the step's own sample and timestep.
  torch::Tensor as_epsilon(const torch::Tensor& out, const torch::Tensor& x, int64_t t) const {
    if (cfg_.prediction_type != "sample") return out;
    torch::Tensor x0, eps;
    ddpm_x0_eps(out, x, schedule_.alpha_bar(t), "sample", &x0, &eps);
    return eps;
  }

  torch::Tensor step_prk(const torch::Tensor& out, int64_t t, const torch::Tensor& x) {
    const int64_t diff = counter_ % 2 ? 0 : cfg_.num_train_timesteps / requested_steps_ / 2;
    const int64_t prev_t = t - diff;
    const int64_t t0 = timesteps_[counter_ / 4 * 4].item<int64_t>();
    torch::Tensor m = out;
    switch (counter_ % 4) {
      case 0:
        cur_model_output_ = out / 6.0;
        ets_.push_back(out);
        cur_sample_ = x;
        break;
      case 1:
      case 2: cur_model_output_ = cur_model_output_ + out / 3.0; break;
      default: m = cur_model_output_ + out / 6.0; cur_model_output_ = torch::Tensor();
    }
    const torch::Tensor& s = cur_sample_.defined() ? cur_sample_ : x;
    return prev_sample(s, t0, prev_t, m);
  }

  torch::Tensor step_plms(const torch::Tensor& out, int64_t t, const torch::Tensor& x) {
    const int64_t stride = cfg_.num_train_timesteps / requested_steps_;
    int64_t prev_t = t - stride;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(out);
    } else {
      prev_t = t;
      t = t + stride;
    }
    torch::Tensor m, s = x;
    const size_t k = ets_.size();
    if (k == 1 && counter_ == 0) {
      m = out;
      cur_sample_ = x;
    } else if (k == 1 && counter_ == 1) {
      m = (out + ets_.back()) / 2;
      s = cur_sample_;
      cur_sample_ = torch::Tensor();
    } else if (k == 2) {
      m = (3 * ets_[1] - ets_[0]) / 2;
    } else if (k == 3) {
      m = (23 * ets_[2] - 16 * ets_[1] + 5 * ets_[0]) / 12;
    } else {
      m = (1.0 / 24) * (55 * ets_[3] - 59 * ets_[2] + 37 * ets_[1] - 9 * ets_[0]);
    }
    return prev_sample(s, t, prev_t, m);
  }

  // Formula (9) of the PNDM paper: x_{t-delta} from x_t and the (combined) noise estimate.
  torch::Tensor prev_sample(const torch::Tensor& x, int64_t t, int64_t prev_t, torch::Tensor m) const {
    const double a_t = schedule_.alpha_bar(t);
    const double a_prev = prev_t >= 0 ? schedule_.alpha_bar(prev_t) : final_alpha_cumprod_;
    const double b_t = 1 - a_t, b_prev = 1 - a_prev;
    if (cfg_.prediction_type == "v_prediction") m = std::sqrt(a_t) * m + std::sqrt(b_t) * x;
    const double sample_coeff = std::sqrt(a_prev / a_t);
    const double denom = a_t * std::sqrt(b_prev) + std::sqrt(a_t * b_t * a_prev);
    return sample_coeff * x - (a_prev - a_t) * m / denom;
  }

  double final_alpha_cumprod_;
  int64_t num_prk_ = 0;
  int64_t counter_ = 0;
  std::vector<torch::Tensor> ets_;  // past noise estimates (at most 4)
  torch::Tensor cur_sample_, cur_model_output_;
};

}  // namespace

std::unique_ptr<Sampler> make_pndm(const SchedulerConfig& cfg) { return std::make_unique<Pndm>(cfg); }

}  // namespace tinv::sched
