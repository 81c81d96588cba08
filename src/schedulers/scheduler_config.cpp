#include "schedulers/scheduler_config.h"

#include <cmath>
#include <set>

#include "io/json_config.h"

namespace tinv {
namespace {

const std::set<std::string> kSchedules = {"scaled_linear", "linear", "squaredcos_cap_v2"};
const std::set<std::string> kPredictions = {"epsilon", "v_prediction", "sample"};
const std::set<std::string> kSpacings = {"leading", "linspace", "trailing"};
const std::set<std::string> kAlgorithms = {"dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"};

std::string join(const std::set<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

void check_one_of(const std::string& where, const std::string& field, const std::string& value,
                  const std::set<std::string>& allowed) {
  TINV_CHECK(allowed.count(value), where, "field '", field, "' has unknown value '", value, "' (expected one of ",
             join(allowed), ")");
}

// diffusers writes infinities as strings ("-inf" for lambda_min_clipped).
double get_number(const JsonConfig& j, const std::string& key, double fallback) {
  if (!j.has(key)) return fallback;
  const auto& v = j.json().at(key);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s == "-inf" || s == "-Infinity") return -INFINITY;
    if (s == "inf" || s == "Infinity") return INFINITY;
  }
  j.fail(key, "must be a number, got " + v.dump());
}

}  // namespace

SchedulerConfig SchedulerConfig::from_json(const JsonConfig& j) {
  SchedulerConfig c;
  c.class_name = j.get<std::string>("_class_name", "PNDMScheduler");
  c.num_train_timesteps = j.get<int64_t>("num_train_timesteps", 1000);
  c.beta_start = get_number(j, "beta_start", 0.0001);
  c.beta_end = get_number(j, "beta_end", 0.02);
  c.beta_schedule = j.get<std::string>("beta_schedule", "linear");
  c.trained_betas = j.get<std::vector<double>>("trained_betas", {});
  c.rescale_betas_zero_snr = j.get<bool>("rescale_betas_zero_snr", false);
  c.prediction_type = j.get<std::string>("prediction_type", "epsilon");
  if (j.has("timestep_spacing")) c.timestep_spacing = j.get<std::string>("timestep_spacing", "");
  c.steps_offset = j.get<int64_t>("steps_offset", 0);
  if (j.has("set_alpha_to_one")) c.set_alpha_to_one = j.get<bool>("set_alpha_to_one", false);
  if (j.has("clip_sample")) c.clip_sample = j.get<bool>("clip_sample", false);
  c.clip_sample_range = get_number(j, "clip_sample_range", 1.0);
  c.skip_prk_steps = j.get<bool>("skip_prk_steps", false);
  c.use_karras_sigmas = j.get<bool>("use_karras_sigmas", false);
  if (j.has("sigma_min")) c.sigma_min = get_number(j, "sigma_min", 0.0);
  if (j.has("sigma_max")) c.sigma_max = get_number(j, "sigma_max", 0.0);
  c.interpolation_type = j.get<std::string>("interpolation_type", "linear");
  c.timestep_type = j.get<std::string>("timestep_type", "discrete");
  c.solver_order = j.get<int64_t>("solver_order", 2);
  c.algorithm_type = j.get<std::string>("algorithm_type", "dpmsolver++");
  if (c.algorithm_type == "deis") c.algorithm_type = "dpmsolver++";  // as diffusers does
  c.solver_type = j.get<std::string>("solver_type", "midpoint");
  if (c.solver_type == "logrho" || c.solver_type == "bh1" || c.solver_type == "bh2")
    c.solver_type = "midpoint";  // as diffusers does
  c.lower_order_final = j.get<bool>("lower_order_final", true);
  c.euler_at_final = j.get<bool>("euler_at_final", false);
  c.final_sigmas_type = j.get<std::string>("final_sigmas_type", "sigma_min");
  c.lambda_min_clipped = get_number(j, "lambda_min_clipped", -INFINITY);

  // Features tinv does not implement: refuse rather than silently sample differently.
  if (j.get<bool>("thresholding", false)) j.fail("thresholding", "true is not supported");
  if (j.get<bool>("use_lu_lambdas", false)) j.fail("use_lu_lambdas", "true is not supported");
  if (j.has("variance_type")) j.fail("variance_type", "learned variance is not supported");
  c.validate(j.source());
  return c;
}

void SchedulerConfig::validate(const std::string& where) const {
  TINV_CHECK(num_train_timesteps >= 2, where, "field 'num_train_timesteps' must be >= 2, got ", num_train_timesteps);
  if (trained_betas.empty()) {
    check_one_of(where, "beta_schedule", beta_schedule, kSchedules);
    TINV_CHECK(beta_start > 0 && beta_end > 0 && beta_start < 1 && beta_end < 1, where,
               "fields 'beta_start'/'beta_end' must lie in (0, 1), got ", beta_start, ", ", beta_end);
  } else {
    TINV_CHECK(static_cast<int64_t>(trained_betas.size()) == num_train_timesteps, where, "field 'trained_betas' holds ",
               trained_betas.size(), " values, expected ", num_train_timesteps);
  }
  check_one_of(where, "prediction_type", prediction_type, kPredictions);
  if (timestep_spacing) check_one_of(where, "timestep_spacing", *timestep_spacing, kSpacings);
  TINV_CHECK(steps_offset >= 0, where, "field 'steps_offset' must be >= 0, got ", steps_offset);
  TINV_CHECK(clip_sample_range > 0, where, "field 'clip_sample_range' must be > 0");
  check_one_of(where, "interpolation_type", interpolation_type, {"linear"});
  check_one_of(where, "timestep_type", timestep_type, {"discrete", "continuous"});
  TINV_CHECK(solver_order == 1 || solver_order == 2, where,
             "field 'solver_order' must be 1 or 2 (third order is not supported), got ", solver_order);
  check_one_of(where, "algorithm_type", algorithm_type, kAlgorithms);
  check_one_of(where, "solver_type", solver_type, {"midpoint", "heun"});
  check_one_of(where, "final_sigmas_type", final_sigmas_type, {"sigma_min", "zero"});
  TINV_CHECK(final_sigmas_type != "zero" || algorithm_type == "dpmsolver++" || algorithm_type == "sde-dpmsolver++",
             where, "field 'final_sigmas_type' 'zero' needs algorithm_type dpmsolver++");
}

SchedulerConfig SchedulerConfig::for_class(const std::string& cls) const {
  SchedulerConfig c = *this;
  c.class_name = cls;
  if (cls == "DDIMScheduler") {
    if (!c.timestep_spacing) c.timestep_spacing = "leading";
    if (!c.set_alpha_to_one) c.set_alpha_to_one = true;
    if (!c.clip_sample) c.clip_sample = true;
  } else if (cls == "PNDMScheduler") {
    if (!c.timestep_spacing) c.timestep_spacing = "leading";
    if (!c.set_alpha_to_one) c.set_alpha_to_one = false;
  } else if (cls == "EulerDiscreteScheduler" || cls == "EulerAncestralDiscreteScheduler" ||
             cls == "DPMSolverMultistepScheduler") {
    if (!c.timestep_spacing) c.timestep_spacing = "linspace";
  } else {
    throw Error("scheduler config", "unknown scheduler class '" + cls + "'");
  }
  if (!c.set_alpha_to_one) c.set_alpha_to_one = false;
  if (!c.clip_sample) c.clip_sample = false;
  return c;
}

SchedulerConfig SchedulerConfig::sd15() {
  SchedulerConfig c;  // runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
  c.class_name = "PNDMScheduler";
  c.beta_schedule = "scaled_linear";
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  c.steps_offset = 1;
  c.set_alpha_to_one = false;
  c.clip_sample = false;
  c.skip_prk_steps = true;
  return c;
}

SchedulerConfig SchedulerConfig::sd21_v() {
  SchedulerConfig c = sd15();  // stabilityai/stable-diffusion-2-1 (768, v-prediction)
  c.class_name = "DDIMScheduler";
  c.prediction_type = "v_prediction";
  return c;
}

SchedulerConfig SchedulerConfig::sdxl() {
  SchedulerConfig c = sd15();  // stabilityai/stable-diffusion-xl-base-1.0
  c.class_name = "EulerDiscreteScheduler";
  c.timestep_spacing = "leading";
  c.interpolation_type = "linear";
  return c;
}

}  // namespace tinv
