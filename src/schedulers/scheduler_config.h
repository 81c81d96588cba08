// Noise-schedule and sampler configuration, read from a diffusers `scheduler_config.json`.
//
//   auto cfg = tinv::SchedulerConfig::from_json(tinv::JsonConfig::load("scheduler/scheduler_config.json"));
//   auto ddim = cfg.for_class("DDIMScheduler");   // class defaults filled in
//
// One struct covers the fields of every sampler tinv implements (DDIM, PNDM, Euler, Euler
// ancestral, DPM-Solver multistep). Fields whose diffusers default differs between scheduler
// classes are optional here and resolved by for_class(), as diffusers' `from_config` does when a
// config saved by one class is loaded by another.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace tinv {

class JsonConfig;

struct SchedulerConfig {
  std::string class_name = "PNDMScheduler";  // `_class_name`: the pipeline's default sampler
  // Training noise schedule.
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // scaled_linear | linear | squaredcos_cap_v2
  std::vector<double> trained_betas;            // overrides beta_schedule when non-empty
  bool rescale_betas_zero_snr = false;          // Lin et al. 2023: zero terminal SNR
  std::string prediction_type = "epsilon";      // epsilon | v_prediction | sample
  // Inference timesteps.
  std::optional<std::string> timestep_spacing;  // leading | linspace | trailing (class default)
  int64_t steps_offset = 1;
  // DDIM / PNDM.
  std::optional<bool> set_alpha_to_one;  // DDIM default true, PNDM false
  std::optional<bool> clip_sample;       // DDIM default true
  double clip_sample_range = 1.0;
  bool skip_prk_steps = true;  // PNDM: PLMS only
  // Euler / Euler ancestral / DPM-Solver.
  bool use_karras_sigmas = false;
  std::optional<double> sigma_min, sigma_max;  // Karras range (default: the schedule's ends)
  std::string interpolation_type = "linear";   // Euler: sigma(t) interpolation
  std::string timestep_type = "discrete";      // Euler: discrete | continuous
  // DPM-Solver multistep.
  int64_t solver_order = 2;                    // 1 or 2 (2M)
  std::string algorithm_type = "dpmsolver++";  // dpmsolver++ | dpmsolver | sde-dpmsolver++ | sde-dpmsolver
  std::string solver_type = "midpoint";        // midpoint | heun
  bool lower_order_final = true;               // first-order final steps when < 15 steps
  bool euler_at_final = false;
  std::string final_sigmas_type = "sigma_min";  // sigma_min (diffusers 0.25) | zero
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();

  // Parses a diffusers scheduler config. Absent fields take diffusers' constructor defaults
  // (linear 1e-4..0.02, steps_offset 0, ...). Unknown schedule, spacing, prediction type,
  // algorithm, or unsupported features (thresholding, solver_order 3, ...) throw tinv::Error
  // naming the source and field.
  static SchedulerConfig from_json(const JsonConfig& json);
  // The configs shipped with Stable Diffusion 1.5 (PNDM, epsilon) and 2.1-768 (DDIM, v-pred).
  static SchedulerConfig sd15();
  static SchedulerConfig sd21_v();
  static SchedulerConfig sdxl();  // EulerDiscrete, leading spacing, steps_offset 1, epsilon

  // Copy with class_name set and the class-dependent optionals filled with that class's
  // diffusers defaults (timestep_spacing, set_alpha_to_one, clip_sample).
  SchedulerConfig for_class(const std::string& diffusers_class) const;
  // Throws tinv::Error(where, "field '...' ...") on any invalid value.
  void validate(const std::string& where) const;
};

}  // namespace tinv
