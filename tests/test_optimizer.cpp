// The one AdamW (inversion/optimizer.h) and the one learning-rate schedule (inversion/lr_schedule.h)
// that both trainers use: the inversion trainer and `tinv world train` (apps/world_train.cpp).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "inversion/lr_schedule.h"
#include "inversion/optimizer.h"
#include "test_util.h"

namespace tinv {
namespace {

// torch/optim/adamw.py `_single_tensor_adamw` (torch 1.13 / 2.x, amsgrad=False), written out:
// the reference tinv::AdamW must match bit for bit (the ti_train parity fixtures were made by it).
void python_adamw_step(torch::Tensor& p, torch::Tensor& m, torch::Tensor& v, const torch::Tensor& g, double lr,
                       int64_t step, double b1, double b2, double wd, double eps) {
  p.mul_(1 - lr * wd);
  m.lerp_(g, 1 - b1);
  v.mul_(b2).addcmul_(g, g, 1 - b2);
  const double c1 = 1 - std::pow(b1, static_cast<double>(step));
  const double c2 = 1 - std::pow(b2, static_cast<double>(step));
  auto denom = (v.sqrt() / std::sqrt(c2)).add_(eps);
  p.addcdiv_(m, denom, -lr / c1);
}

TEST(AdamW, BitExactWithPythonAdamW) {
  torch::manual_seed(3);
  auto ours = torch::randn({4, 7});
  auto ref = ours.clone(), m = torch::zeros_like(ref), v = torch::zeros_like(ref);
  AdamW opt(ours, {});
  for (int64_t k = 1; k <= 50; ++k) {
    auto g = torch::randn({4, 7});
    const double lr = 5e-3 * (1 + 0.01 * static_cast<double>(k));
    opt.step(g, lr);
    python_adamw_step(ref, m, v, g, lr, k, 0.9, 0.999, 1e-2, 1e-8);
  }
  EXPECT_TRUE(torch::equal(ours, ref));
  EXPECT_TRUE(torch::equal(opt.exp_avg(), m));
  EXPECT_TRUE(torch::equal(opt.exp_avg_sq(), v));
}

// The question: could torch::optim::AdamW replace ours? Only if it is bit-exact with
// it. It is not (libtorch's C++ AdamW updates the first moment as m*b1 + g*(1-b1), Python's and
// ours as lerp), so tinv keeps its own AdamW; the two agree to rounding.
TEST(AdamW, LibtorchAdamWAgreesOnlyToRounding) {
  torch::manual_seed(3);
  auto p0 = torch::randn({64, 32});
  auto ours = p0.clone();
  auto ref = p0.clone().requires_grad_(true);
  AdamW opt(ours, {});
  torch::optim::AdamW ref_opt({ref}, torch::optim::AdamWOptions(5e-3).weight_decay(1e-2).eps(1e-8));
  for (int k = 0; k < 50; ++k) {
    auto g = torch::randn({64, 32});
    opt.step(g, 5e-3);
    ref.mutable_grad() = g.clone();
    ref_opt.step();
  }
  EXPECT_TRUE(torch::allclose(ours, ref.detach(), 1e-6, 1e-7));
  const bool bit_exact = torch::equal(ours, ref.detach());
  std::printf("torch::optim::AdamW bit-exact with tinv::AdamW over 50 steps: %s (max |diff| %g)\n",
              bit_exact ? "yes" : "no", (ours - ref.detach()).abs().max().item<double>());
  EXPECT_FALSE(bit_exact) << "libtorch's AdamW is now bit-exact with tinv's: use torch::optim::AdamW";
}

// The world trainer's former hand-written AdamW (apps/world_train.cpp before issue 13): now
// tinv::AdamW per tensor (beta2 0.99, no weight decay on 1-D tensors). Same algorithm, other
// rounding: the weights agree to ~1e-6 relative after many steps, not bit for bit.
TEST(AdamW, WorldTrainerSettingsMatchTheFormerUpdate) {
  torch::manual_seed(5);
  for (auto shape : {std::vector<int64_t>{16, 8}, std::vector<int64_t>{16}}) {
    auto ours = torch::randn(shape), old = ours.clone();
    auto m = torch::zeros_like(old), v = torch::zeros_like(old);
    AdamWOptions o;
    o.beta2 = 0.99;
    o.weight_decay = shape.size() >= 2 ? 0.01 : 0.0;
    AdamW opt(ours, o);
    const double b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.01, lr = 1e-3;
    for (int64_t step = 1; step <= 200; ++step) {
      auto g = torch::randn(shape);
      opt.step(g, lr);
      const double c1 = 1 - std::pow(b1, static_cast<double>(step));
      const double c2 = 1 - std::pow(b2, static_cast<double>(step));
      m.mul_(b1).add_(g, 1 - b1);
      v.mul_(b2).addcmul_(g, g, 1 - b2);
      if (old.dim() >= 2) old.mul_(1 - lr * wd);
      old.addcdiv_(m / c1, (v / c2).sqrt_().add_(eps), -lr);
    }
    EXPECT_TRUE(torch::allclose(ours, old, 1e-5, 1e-6)) << (ours - old).abs().max().item<double>();
    EXPECT_TRUE(torch::allclose(opt.exp_avg(), m, 1e-5, 1e-7));
    EXPECT_TRUE(torch::allclose(opt.exp_avg_sq(), v, 1e-5, 1e-9));
  }
}

TEST(AdamW, StateRoundTrip) {
  torch::manual_seed(1);
  auto a = torch::randn({3, 4}), b = a.clone();
  AdamW x(a, {}), y(b, {});
  for (int k = 0; k < 5; ++k) x.step(torch::randn({3, 4}), 1e-2);
  b.copy_(a);
  y.load_state(x.exp_avg(), x.exp_avg_sq(), x.steps());
  auto g = torch::randn({3, 4});
  x.step(g, 1e-2);
  y.step(g, 1e-2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(y.steps(), 6);
  EXPECT_TINV_ERROR(y.load_state(torch::zeros({2, 4}), torch::zeros({2, 4}), 1), "does not match");
  EXPECT_TINV_ERROR(y.step(torch::zeros({4, 3}), 1e-2), "gradient");
}

// ---- the learning-rate schedule ----

// The former lr_at of apps/world_train.cpp: warm-up, then cosine to 10% of the peak.
double former_world_lr(double peak, int64_t step, int64_t total) {
  const int64_t warm = std::max<int64_t>(1, std::min<int64_t>(200, total / 10));
  if (step < warm) return peak * static_cast<double>(step + 1) / static_cast<double>(warm);
  const double t = static_cast<double>(step - warm) / static_cast<double>(std::max<int64_t>(1, total - warm));
  return peak * (0.1 + 0.9 * 0.5 * (1 + std::cos(3.14159265358979323846 * std::min(1.0, t))));
}

// The cosine of LrSchedule before final_ratio existed (inversion runs must not move).
double former_cosine(const LrSchedule& s, int64_t k) {
  if (s.warmup_steps > 0 && k < s.warmup_steps)
    return s.base_lr * static_cast<double>(k + 1) / static_cast<double>(s.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
  const double p = std::clamp(static_cast<double>(k - s.warmup_steps) / span, 0.0, 1.0);
  return s.base_lr * 0.5 * (1.0 + std::cos(M_PI * p));
}

TEST(LrSchedule, WorldScheduleIsTheFormerOneBitForBit) {
  for (int64_t total : {1, 2, 7, 10, 99, 1000, 2500, 6000, 20000})
    for (double peak : {1e-3, 5e-4, 3e-4}) {
      LrSchedule s = LrSchedule::make(LrScheduleKind::kCosine, peak, total,
                                      std::max<int64_t>(1, std::min<int64_t>(200, total / 10)));
      s.final_ratio = 0.1;
      for (int64_t k = 0; k < total + 3; ++k)
        ASSERT_EQ(s.at(k), former_world_lr(peak, k, total)) << "total " << total << " step " << k;
    }
}

TEST(LrSchedule, CosineWithoutFinalRatioIsUnchanged) {
  for (int64_t total : {1, 10, 100, 1234})
    for (int64_t warmup : {0, 1, 5}) {
      LrSchedule s = LrSchedule::make(LrScheduleKind::kCosine, 5e-3, total, warmup);
      for (int64_t k = 0; k < total + 2; ++k) ASSERT_EQ(s.at(k), former_cosine(s, k)) << total << " " << k;
    }
}

TEST(LrSchedule, FinalRatio) {
  LrSchedule s = LrSchedule::make(LrScheduleKind::kCosine, 1e-2, 100, 0);
  s.final_ratio = 0.1;
  EXPECT_DOUBLE_EQ(s.at(0), 1e-2);
  EXPECT_DOUBLE_EQ(s.at(100), 1e-3);
  EXPECT_NEAR(s.at(50), 5.5e-3, 1e-12);
}

}  // namespace
}  // namespace tinv
