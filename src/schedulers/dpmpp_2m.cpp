// DPM-Solver++ 2M (Lu et al. 2022), mirroring diffusers 0.25 DPMSolverMultistepScheduler with
// solver_order 1 or 2: data (dpmsolver++) or noise (dpmsolver) prediction, midpoint or heun
// second-order term, SDE variants, lower_order_final, Karras sigmas, final_sigmas_type.
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "schedulers/sampler_math.h"

namespace tinv::sched {
namespace {

// VP coefficients of a Karras sigma: alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha,
// lambda = log(alpha) - log(sigma_t) (half log-SNR).
struct Vp {
  double alpha, sigma, lambda;
  explicit Vp(double s)
      : alpha(1 / std::sqrt(s * s + 1)), sigma(s * alpha), lambda(std::log(alpha) - std::log(sigma)) {}
};

class DpmSolverMultistep : public Sampler {
 public:
  explicit DpmSolverMultistep(const SchedulerConfig& cfg) : Sampler(cfg) {}
  std::string name() const override { return "dpmpp_2m"; }

  void set_timesteps(int64_t steps) override {
    check_steps(steps);
    requested_steps_ = steps;
    const int64_t n = cfg_.num_train_timesteps;
    // Clip the smallest lambda(t) for numerical stability (lambda_min_clipped).
    const auto& abar = schedule_.alphas_cumprod();
    auto lambda_t = (abar.sqrt().log() - (1 - abar).sqrt().log()).flip(0);  // ascending
    const int64_t clipped = (lambda_t < cfg_.lambda_min_clipped).sum().item<int64_t>();
    const int64_t last = n - clipped;

    std::vector<double> t;
    const std::string& spacing = *cfg_.timestep_spacing;
    if (spacing == "linspace") {
      for (double v : np_linspace(0, static_cast<double>(last - 1), steps + 1)) t.push_back(np_round(v));
      t = {t.rbegin(), t.rend() - 1};
    } else if (spacing == "leading") {
      const int64_t ratio = last / (steps + 1);
      for (int64_t k = steps; k >= 1; --k) t.push_back(static_cast<double>(k * ratio + cfg_.steps_offset));
    } else {  // trailing
      const double ratio = static_cast<double>(n) / static_cast<double>(steps);
      for (double v : np_arange(static_cast<double>(last), 0.0, -ratio)) t.push_back(np_round(v) - 1);
    }

    const std::vector<float> table = train_sigmas(abar);
    std::vector<double> s;
    double sigma_last;
    if (cfg_.use_karras_sigmas) {
      const auto log_table = log_of(table);
      s = karras_sigmas(cfg_.sigma_min.value_or(table.front()), cfg_.sigma_max.value_or(table.back()), steps);
      t.resize(s.size());
      for (size_t i = 0; i < s.size(); ++i) t[i] = np_round(sigma_to_t(s[i], log_table));
      sigma_last = static_cast<float>(s.back());
    } else {
      s = np_interp(t, {table.begin(), table.end()});
      sigma_last = table.front();  // sigma at t = 0
    }
    if (cfg_.final_sigmas_type == "zero") sigma_last = 0;
    s.push_back(sigma_last);
    sigmas_ = to_float_tensor(s);  // [steps + 1]
    timesteps_ = to_int_tensor(t);
    outputs_.clear();
    lower_order_nums_ = 0;
    next_index_ = 0;
  }

  torch::Tensor step(const torch::Tensor& out, int64_t i, const torch::Tensor& x, const NoiseSource& noise) override {
    check_index(i);
    TINV_CHECK(i == next_index_, name(), "steps must be taken in order: expected step ", next_index_, ", got ", i);
    const int64_t n = num_steps();
    const bool few = cfg_.lower_order_final && n < 15;
    // (diffusers' lower_order_second only chooses between second and third order.)
    const bool lower_order_final = i == n - 1 && (cfg_.euler_at_final || few || cfg_.final_sigmas_type == "zero");

    outputs_.push_back(convert_model_output(out, x, sigma(i)));
    if (static_cast<int64_t>(outputs_.size()) > cfg_.solver_order) outputs_.erase(outputs_.begin());
    const bool sde = cfg_.algorithm_type.rfind("sde-", 0) == 0;
    torch::Tensor z = sde ? draw(noise, out) : torch::Tensor();

    torch::Tensor prev;
    if (cfg_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final)
      prev = first_order(outputs_.back(), x, i, z);
    else
      prev = second_order(x, i, z);
    if (lower_order_nums_ < cfg_.solver_order) ++lower_order_nums_;
    ++next_index_;
    return prev;
  }

 private:
  double sigma(int64_t i) const { return sigmas_[i].item<float>(); }

  // The model output as data prediction x0 (dpmsolver++) or noise prediction (dpmsolver).
  torch::Tensor convert_model_output(const torch::Tensor& out, const torch::Tensor& x, double s) const {
    const Vp v(s);
    const bool data = cfg_.algorithm_type == "dpmsolver++" || cfg_.algorithm_type == "sde-dpmsolver++";
    const std::string& p = cfg_.prediction_type;
    if (data) {
      if (p == "epsilon") return (x - v.sigma * out) / v.alpha;
      if (p == "sample") return out;
      return v.alpha * x - v.sigma * out;  // v_prediction
    }
    if (p == "epsilon") return out;
    if (p == "sample") return (x - v.alpha * out) / v.sigma;
    return v.alpha * out + v.sigma * x;  // v_prediction
  }

  // DPM-Solver(++) first order = DDIM (eq. 5 of the ++ paper).
  torch::Tensor first_order(const torch::Tensor& m, const torch::Tensor& x, int64_t i, const torch::Tensor& z) const {
    const Vp t(sigma(i + 1)), s(sigma(i));
    const double h = t.lambda - s.lambda;
    const std::string& a = cfg_.algorithm_type;
    if (a == "dpmsolver++") return (t.sigma / s.sigma) * x - (t.alpha * (std::exp(-h) - 1.0)) * m;
    if (a == "dpmsolver") return (t.alpha / s.alpha) * x - (t.sigma * (std::exp(h) - 1.0)) * m;
    if (a == "sde-dpmsolver++")
      return (t.sigma / s.sigma * std::exp(-h)) * x + (t.alpha * (1 - std::exp(-2.0 * h))) * m +
             t.sigma * std::sqrt(1.0 - std::exp(-2 * h)) * z;
    return (t.alpha / s.alpha) * x - 2.0 * (t.sigma * (std::exp(h) - 1.0)) * m +
           t.sigma * std::sqrt(std::exp(2 * h) - 1.0) * z;  // sde-dpmsolver
  }

  // Multistep second order from the last two converted outputs (m0 at step i, m1 at i - 1).
  torch::Tensor second_order(const torch::Tensor& x, int64_t i, const torch::Tensor& z) const {
    const Vp t(sigma(i + 1)), s0(sigma(i)), s1(sigma(i - 1));
    const auto& m0 = outputs_[outputs_.size() - 1];
    const auto& m1 = outputs_[outputs_.size() - 2];
    const double h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, r0 = h0 / h;
    const torch::Tensor& d0 = m0;
    const torch::Tensor d1 = (1.0 / r0) * (m0 - m1);
    const bool mid = cfg_.solver_type == "midpoint";
    const std::string& a = cfg_.algorithm_type;
    if (a == "dpmsolver++") {
      auto base = (t.sigma / s0.sigma) * x - (t.alpha * (std::exp(-h) - 1.0)) * d0;
      return mid ? base - 0.5 * (t.alpha * (std::exp(-h) - 1.0)) * d1
                 : base + (t.alpha * ((std::exp(-h) - 1.0) / h + 1.0)) * d1;
    }
    if (a == "dpmsolver") {
      auto base = (t.alpha / s0.alpha) * x - (t.sigma * (std::exp(h) - 1.0)) * d0;
      return mid ? base - 0.5 * (t.sigma * (std::exp(h) - 1.0)) * d1
                 : base - (t.sigma * ((std::exp(h) - 1.0) / h - 1.0)) * d1;
    }
    if (a == "sde-dpmsolver++") {
      auto base = (t.sigma / s0.sigma * std::exp(-h)) * x + (t.alpha * (1 - std::exp(-2.0 * h))) * d0 +
                  t.sigma * std::sqrt(1.0 - std::exp(-2.0 * h)) * z;
      return mid ? base + 0.5 * (t.alpha * (1 - std::exp(-2.0 * h))) * d1
                 : base + (t.alpha * ((1.0 - std::exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * d1;
    }
    auto base = (t.alpha / s0.alpha) * x - 2.0 * (t.sigma * (std::exp(h) - 1.0)) * d0 +
                t.sigma * std::sqrt(std::exp(2 * h) - 1.0) * z;  // sde-dpmsolver
    return mid ? base - (t.sigma * (std::exp(h) - 1.0)) * d1
               : base - 2.0 * (t.sigma * ((std::exp(h) - 1.0) / h - 1.0)) * d1;
  }

  std::vector<torch::Tensor> outputs_;  // converted outputs of the last solver_order steps
  int64_t lower_order_nums_ = 0;
  int64_t next_index_ = 0;
};

}  // namespace

std::unique_ptr<Sampler> make_dpmpp_2m(const SchedulerConfig& cfg) { return std::make_unique<DpmSolverMultistep>(cfg); }

}  // namespace tinv::sched
