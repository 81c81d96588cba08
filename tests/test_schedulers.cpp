// Unit tests for the noise schedule, scheduler configs and samplers.
#include <torch/torch.h>

#include <cmath>

#include "io/json_config.h"
#include "schedulers/noise_schedule.h"
#include "schedulers/sampler.h"
#include "schedulers/scheduler_config.h"
#include "test_util.h"

namespace tinv {
namespace {

SchedulerConfig parse(const std::string& json) {
  return SchedulerConfig::from_json(JsonConfig::parse(json, "scheduler_config.json"));
}

std::vector<int64_t> ints(const torch::Tensor& t) {
  auto c = t.to(torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::unique_ptr<Sampler> sampler_with(const std::string& name, SchedulerConfig cfg, int64_t steps) {
  auto s = make_sampler(name, cfg);
  s->set_timesteps(steps);
  return s;
}

// abar of the step's model input: sigma-based samplers use 1 / (1 + sigma^2), the others the
// training schedule at the (integer) timestep.
double step_abar(const Sampler& s, int64_t i) {
  if (s.sigmas().defined()) {
    double sigma = s.sigmas()[i].item<float>();
    return 1 / (1 + sigma * sigma);
  }
  return s.schedule().alpha_bar(static_cast<int64_t>(s.timestep(i)));
}

// Runs a full sampling loop with `model(x_in, t, abar)` from init_noise_sigma * noise.
torch::Tensor sample(Sampler& s, const torch::Tensor& start_noise,
                     const std::function<torch::Tensor(const torch::Tensor&, double, double)>& model,
                     const NoiseSource& noise = nullptr) {
  auto x = start_noise * s.init_noise_sigma();
  for (int64_t i = 0; i < s.num_steps(); ++i) {
    auto out = model(s.scale_model_input(x, i), s.timestep(i), step_abar(s, i));
    x = s.step(out, i, x, noise);
  }
  return x;
}

TEST(SchedulerConfig, ParsesDiffusersJson) {
  auto c = parse(R"({"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
      "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction",
      "steps_offset": 1, "clip_sample": false, "lambda_min_clipped": "-inf", "trained_betas": null})");
  EXPECT_EQ(c.class_name, "DDIMScheduler");
  EXPECT_EQ(c.prediction_type, "v_prediction");
  EXPECT_EQ(c.steps_offset, 1);
  EXPECT_FALSE(c.timestep_spacing.has_value());
  EXPECT_TRUE(std::isinf(c.lambda_min_clipped));
  auto ddim = c.for_class("DDIMScheduler");
  EXPECT_EQ(*ddim.timestep_spacing, "leading");
  EXPECT_TRUE(*ddim.set_alpha_to_one);  // DDIM's default when absent
  EXPECT_FALSE(*ddim.clip_sample);      // given
  EXPECT_EQ(*c.for_class("EulerDiscreteScheduler").timestep_spacing, "linspace");
}

TEST(SchedulerConfig, ValidationNamesTheField) {
  EXPECT_TINV_ERROR(parse(R"({"beta_schedule": "cosine"})"), "'beta_schedule'");
  EXPECT_TINV_ERROR(parse(R"({"timestep_spacing": "middle"})"), "'timestep_spacing'");
  EXPECT_TINV_ERROR(parse(R"({"prediction_type": "x0"})"), "'prediction_type'");
  EXPECT_TINV_ERROR(parse(R"({"algorithm_type": "unipc"})"), "'algorithm_type'");
  EXPECT_TINV_ERROR(parse(R"({"solver_order": 3})"), "'solver_order'");
  EXPECT_TINV_ERROR(parse(R"({"thresholding": true})"), "'thresholding'");
  EXPECT_TINV_ERROR(parse(R"({"num_train_timesteps": 4, "trained_betas": [0.1, 0.2]})"), "'trained_betas'");
  EXPECT_TINV_ERROR(parse(R"({"steps_offset": "one"})"), "'steps_offset'");
  EXPECT_TINV_ERROR(parse(R"({"beta_schedule": "cosine"})"), "scheduler_config.json");
}

TEST(NoiseSchedule, Sd15MatchesClosedForm) {
  NoiseSchedule s(SchedulerConfig::sd15());
  ASSERT_EQ(s.num_train_timesteps(), 1000);
  EXPECT_NEAR(s.betas()[0].item<double>(), 0.00085, 1e-8);
  EXPECT_NEAR(s.betas()[999].item<double>(), 0.012, 1e-8);
  EXPECT_NEAR(s.alpha_bar(0), 1 - 0.00085, 1e-7);
  EXPECT_NEAR(s.alpha_bar(999), 0.0046, 1e-4);  // SD's well-known terminal abar
  EXPECT_TINV_ERROR(s.alpha_bar(1000), "outside");
}

TEST(NoiseSchedule, OtherSchedules) {
  SchedulerConfig c;
  c.beta_schedule = "squaredcos_cap_v2";
  NoiseSchedule cos(c);
  EXPECT_LE(cos.betas().max().item<double>(), 0.999 + 1e-6);
  EXPECT_TRUE((cos.alphas_cumprod().diff() < 0).all().item<bool>());
  c.beta_schedule = "linear";
  c.beta_start = 0.0001;
  c.beta_end = 0.02;
  c.rescale_betas_zero_snr = true;
  NoiseSchedule zsnr(c);
  EXPECT_NEAR(zsnr.alpha_bar(999), 0.0, 1e-9);
}

TEST(NoiseSchedule, AddNoiseVelocityAndTarget) {
  NoiseSchedule s(SchedulerConfig::sd15());
  auto x0 = torch::randn({2, 4, 3, 3}), noise = torch::randn({2, 4, 3, 3});
  auto t = torch::tensor({10, 900}, torch::kInt64);
  auto xt = s.add_noise(x0, noise, t);
  double a = std::sqrt(s.alpha_bar(900)), b = std::sqrt(1 - s.alpha_bar(900));
  EXPECT_TRUE(torch::allclose(xt[1], a * x0[1] + b * noise[1], 1e-5, 1e-6));
  auto v = s.velocity(x0, noise, t);
  EXPECT_TRUE(torch::allclose(v[1], a * noise[1] - b * x0[1], 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(s.target(x0, noise, t, "epsilon"), noise));
  EXPECT_TRUE(torch::equal(s.target(x0, noise, t, "sample"), x0));
  EXPECT_TRUE(torch::equal(s.target(x0, noise, t, "v_prediction"), v));
  EXPECT_TINV_ERROR(s.target(x0, noise, t, "flow"), "flow");
  EXPECT_TINV_ERROR(s.add_noise(x0, noise, torch::tensor({0, 1000}, torch::kInt64)), "[0, 1000)");
  EXPECT_TINV_ERROR(s.add_noise(x0, noise, torch::tensor({0}, torch::kInt64)), "batch");
}

TEST(Samplers, NamesAndFactory) {
  std::vector<std::string> names = sampler_names();
  EXPECT_EQ(names, (std::vector<std::string>{"ddim", "euler", "euler_a", "dpmpp_2m", "pndm"}));
  for (const auto& n : names) EXPECT_EQ(make_sampler(n, SchedulerConfig::sd15())->name(), n);
  EXPECT_EQ(make_sampler("default", SchedulerConfig::sd15())->name(), "pndm");
  EXPECT_EQ(make_sampler("default", SchedulerConfig::sd21_v())->name(), "ddim");
  try {
    make_sampler("heun", SchedulerConfig::sd15());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'heun'"), std::string::npos) << m;
    for (const auto& n : names) EXPECT_NE(m.find(n), std::string::npos) << m;
  }
  SchedulerConfig odd = SchedulerConfig::sd15();
  odd.class_name = "LMSDiscreteScheduler";
  EXPECT_TINV_ERROR(make_sampler("default", odd), "LMSDiscreteScheduler");
}

TEST(Samplers, StepCountsRefused) {
  for (const auto& n : sampler_names()) {
    auto s = make_sampler(n, SchedulerConfig::sd15());
    EXPECT_TINV_ERROR(s->set_timesteps(0), ">= 1");
    EXPECT_TINV_ERROR(s->set_timesteps(-3), ">= 1");
    EXPECT_TINV_ERROR(s->set_timesteps(1001), "num_train_timesteps");
    EXPECT_TINV_ERROR(s->step(torch::zeros({1}), 0, torch::zeros({1})), "set_timesteps");
    s->set_timesteps(1);
    EXPECT_GE(s->num_steps(), 1);
    EXPECT_TINV_ERROR(s->scale_model_input(torch::zeros({1}), s->num_steps()), "outside");
  }
}

TEST(Samplers, TimestepSpacings) {
  SchedulerConfig c = SchedulerConfig::sd15();
  c.timestep_spacing = "leading";
  EXPECT_EQ(ints(sampler_with("ddim", c, 10)->timesteps()),
            (std::vector<int64_t>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  EXPECT_EQ(ints(sampler_with("pndm", c, 10)->timesteps()),
            (std::vector<int64_t>{901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  c.timestep_spacing = "linspace";
  EXPECT_EQ(ints(sampler_with("ddim", c, 10)->timesteps()),
            (std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  auto t25 = ints(sampler_with("ddim", c, 25)->timesteps());  // 41.625 k, rounded half to even
  EXPECT_EQ(t25[24 - 4], 166);                                // 166.5
  EXPECT_EQ(t25[24 - 12], 500);                               // 499.5
  EXPECT_EQ(ints(sampler_with("dpmpp_2m", c, 10)->timesteps()),
            (std::vector<int64_t>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));
  auto euler = sampler_with("euler", c, 25);
  EXPECT_EQ(euler->timesteps().scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(euler->timesteps()[1].item<float>(), 957.375f);
  EXPECT_EQ(euler->sigmas().size(0), 26);
  EXPECT_EQ(euler->sigmas()[25].item<float>(), 0.0f);
  c.timestep_spacing = "trailing";
  EXPECT_EQ(ints(sampler_with("ddim", c, 10)->timesteps()),
            (std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
  EXPECT_EQ(ints(sampler_with("ddim", c, 3)->timesteps()), (std::vector<int64_t>{999, 666, 332}));
  EXPECT_EQ(ints(sampler_with("pndm", c, 3)->timesteps()), (std::vector<int64_t>{999, 666, 666, 332}));
  // Euler's leading spacing starts from sqrt(sigma_max^2 + 1); linspace from sigma_max.
  c.timestep_spacing = "leading";
  auto el = sampler_with("euler", c, 10);
  double smax = el->sigmas().max().item<float>();
  EXPECT_NEAR(el->init_noise_sigma(), std::sqrt(smax * smax + 1), 1e-5);
  EXPECT_DOUBLE_EQ(sampler_with("ddim", c, 10)->init_noise_sigma(), 1.0);
}

TEST(Samplers, KarrasSigmas) {
  SchedulerConfig c = SchedulerConfig::sd15();
  c.use_karras_sigmas = true;
  for (const std::string n : {"euler", "dpmpp_2m"}) {
    auto s = sampler_with(n, c, 10);
    auto sig = s->sigmas();
    ASSERT_EQ(sig.size(0), 11) << n;
    EXPECT_TRUE((sig.slice(0, 0, 10).diff() < 0).all().item<bool>()) << n;  // decreasing
    NoiseSchedule sched(c);
    double top = std::sqrt((1 - sched.alpha_bar(999)) / sched.alpha_bar(999));
    EXPECT_NEAR(sig[0].item<float>(), top, 1e-3 * top) << n;
    EXPECT_NEAR(s->timestep(0), 999, 1e-3) << n;
  }
}

// The exact-noise denoiser of a known x0 (in the DDPM parameterisation of the model input)
// leads every sampler to x0.
TEST(Samplers, ExactDenoiserRecoversX0) {
  torch::manual_seed(3);
  auto x0 = torch::randn({1, 4, 5, 5}), start = torch::randn({1, 4, 5, 5});
  auto oracle = [&](const torch::Tensor& x_in, double, double abar) {
    return (x_in - std::sqrt(abar) * x0) / std::sqrt(1 - abar);
  };
  SchedulerConfig c = SchedulerConfig::sd15();
  c.set_alpha_to_one = true;     // DDIM/PNDM end at abar = 1
  c.final_sigmas_type = "zero";  // DPM-Solver ends at sigma 0
  for (const auto& n : sampler_names()) {
    for (int64_t steps : {7, 20}) {
      auto s = sampler_with(n, c, steps);
      auto x = sample(*s, start, oracle, seeded_noise(5));
      EXPECT_TRUE(torch::allclose(x, x0, 1e-4, 1e-4))
          << n << " " << steps << " max err " << (x - x0).abs().max().item<double>();
    }
  }
}

// A v-prediction run on the v-equivalent of an epsilon model matches the epsilon run
// (not PNDM: diffusers combines raw v outputs of different steps before converting them).
TEST(Samplers, VPredictionEquivalence) {
  torch::manual_seed(4);
  auto start = torch::randn({1, 4, 6, 6});
  auto eps_model = [](const torch::Tensor& x, double t, double) {
    return 0.6 * torch::tanh(x) * std::cos(2 * t / 1000) + 0.1 * std::sin(5 * t / 1000);
  };
  auto v_model = [&](const torch::Tensor& x, double t, double abar) {
    auto eps = eps_model(x, t, abar);
    auto x0 = (x - std::sqrt(1 - abar) * eps) / std::sqrt(abar);
    return std::sqrt(abar) * eps - std::sqrt(1 - abar) * x0;
  };
  for (const auto& n : sampler_names()) {
    if (n == "pndm") continue;
    SchedulerConfig eps_cfg = SchedulerConfig::sd15(), v_cfg = SchedulerConfig::sd21_v();
    auto a = sample(*sampler_with(n, eps_cfg, 12), start, eps_model, seeded_noise(9));
    auto b = sample(*sampler_with(n, v_cfg, 12), start, v_model, seeded_noise(9));
    double rel = ((a - b).norm() / a.norm()).item<double>();
    EXPECT_LT(rel, 1e-5) << n;
  }
}

TEST(Samplers, StochasticNeedsNoiseAndHistoryNeedsOrder) {
  auto x = torch::randn({1, 4, 2, 2});
  auto ea = sampler_with("euler_a", SchedulerConfig::sd15(), 5);
  EXPECT_TINV_ERROR(ea->step(x, 0, x), "noise source");
  auto ddim = make_sampler("ddim", SchedulerConfig::sd15(), 0.5);
  ddim->set_timesteps(5);
  EXPECT_TINV_ERROR(ddim->step(x, 0, x), "noise source");
  EXPECT_EQ(ddim->step(x, 0, x, seeded_noise(1)).sizes(), x.sizes());
  for (const std::string n : {"dpmpp_2m", "pndm"}) {
    auto s = sampler_with(n, SchedulerConfig::sd15(), 5);
    s->step(x, 0, x);
    EXPECT_TINV_ERROR(s->step(x, 2, x), "in order");
  }
  // Replayed noise is handed out in order and runs out.
  auto seq = noise_sequence(torch::arange(6, torch::kFloat32).reshape({3, 1, 2}));
  auto like = torch::zeros({1, 2});
  EXPECT_EQ(seq(like)[0][1].item<float>(), 1.0f);
  EXPECT_EQ(seq(like)[0][1].item<float>(), 3.0f);
  seq(like);
  EXPECT_TINV_ERROR(seq(like), "exhausted");
  // Seeded noise is reproducible.
  EXPECT_TRUE(torch::equal(seeded_noise(42)(like), seeded_noise(42)(like)));
}

}  // namespace
}  // namespace tinv
