// Parity case group 'scheduler' (see ../shared/fixtures/README.md, scheduler.safetensors):
// the training schedule, forward noising, and every sampler of the file run over the analytic
// denoiser of metadata `model`, each configured from its diffusers config in metadata `configs`.
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "io/json_config.h"
#include "io/safetensors.h"
#include "parity/parity.h"
#include "schedulers/noise_schedule.h"
#include "schedulers/sampler.h"

namespace tinv::parity {
namespace {

// eps(x, t) = 0.6 tanh(x) cos(2t/1000) + 0.1 sin(5t/1000), the fixture's stand-in denoiser.
torch::Tensor analytic_model(const torch::Tensor& x, double t) {
  return 0.6 * torch::tanh(x) * std::cos(2 * t / 1000) + 0.1 * std::sin(5 * t / 1000);
}

// Exact equality for integer or float timesteps (Euler's are fractional).
CaseResult compare_timesteps(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref) {
  if (!ref.is_floating_point()) return compare_exact(name, ours, ref);
  CaseResult r = compare_abs(name, ours, ref, 0.0);
  r.tol = "exact";
  return r;
}

// Runs the sampler loop of diffusers' pipelines from `init` and returns the final sample.
torch::Tensor run_loop(Sampler& sampler, const torch::Tensor& init, const NoiseSource& noise) {
  torch::Tensor x = init;
  for (int64_t i = 0; i < sampler.num_steps(); ++i) {
    auto eps = analytic_model(sampler.scale_model_input(x, i), sampler.timestep(i));
    x = sampler.step(eps, i, x, noise);
  }
  return x;
}

std::vector<CaseResult> sampler_cases(const SafeTensors& file, const nlohmann::json& config, const std::string& name,
                                      int64_t steps, const torch::Device& device) {
  const std::string key = name + "." + std::to_string(steps);
  const std::string label = "scheduler." + key;
  std::unique_ptr<Sampler> sampler;
  try {
    SchedulerConfig cfg = SchedulerConfig::from_json(JsonConfig(config, file.path() + ": metadata configs." + name));
    sampler = make_sampler(name, cfg);
    sampler->set_timesteps(steps);
  } catch (const std::exception& e) {
    return {failed(label, e.what())};
  }
  std::vector<CaseResult> results;
  results.push_back(guarded(label + ".timesteps", [&] {
    return compare_timesteps(label + ".timesteps", sampler->timesteps(), file.get(key + ".timesteps"));
  }));
  if (file.contains(key + ".sigmas")) {
    results.push_back(guarded(label + ".sigmas", [&] {
      TINV_CHECK(sampler->sigmas().defined(), name, "this sampler has no sigmas");
      return compare_rel(label + ".sigmas", sampler->sigmas(), file.get(key + ".sigmas"), 1e-5);
    }));
  }
  results.push_back(guarded(label + ".final", [&] {
    NoiseSource noise;
    if (file.contains(key + ".noises")) noise = noise_sequence(input(file, key + ".noises", device));
    sampler->set_timesteps(steps);  // fresh state
    auto out = run_loop(*sampler, input(file, key + ".init", device), noise);
    return compare_rel(label + ".final", out, file.get(key + ".final"), 1e-5);
  }));
  return results;
}

}  // namespace

std::vector<CaseResult> run_scheduler(const std::string& dir, const torch::Device& device,
                                      torch::ScalarType /*dtype: samplers run in float32*/) {
  const std::string path = join_path(dir, "cases/scheduler.safetensors");
  const SafeTensors file = SafeTensors::open(path);
  std::vector<CaseResult> results;

  // Training schedule and forward noising, with the pipeline's scheduler config.
  const SchedulerConfig train_cfg =
      SchedulerConfig::from_json(JsonConfig::load(join_path(dir, "model/scheduler/scheduler_config.json")));
  const NoiseSchedule schedule(train_cfg);
  results.push_back(guarded("scheduler.alphas_cumprod", [&] {
    return compare_rel("scheduler.alphas_cumprod", schedule.alphas_cumprod(), file.get("alphas_cumprod"), 1e-5);
  }));
  results.push_back(guarded("scheduler.add_noise", [&] {
    auto out = schedule.add_noise(input(file, "add_noise.x0", device), input(file, "add_noise.noise", device),
                                  input(file, "add_noise.t", device, torch::kInt64));
    return compare_rel("scheduler.add_noise", out, file.get("add_noise.out"), 1e-5);
  }));
  results.push_back(guarded("scheduler.velocity", [&] {
    auto out = schedule.velocity(input(file, "add_noise.x0", device), input(file, "add_noise.noise", device),
                                 input(file, "add_noise.t", device, torch::kInt64));
    return compare_rel("scheduler.velocity", out, file.get("velocity.out"), 1e-5);
  }));

  // Samplers: every "<name>.<steps>.init" in the file, configured from metadata configs.
  nlohmann::json configs = nlohmann::json::object();
  auto meta = file.metadata().find("configs");
  if (meta != file.metadata().end()) configs = nlohmann::json::parse(meta->second);
  std::map<std::string, std::set<int64_t>> runs;
  for (const auto& k : file.keys()) {
    const std::string suffix = ".init";
    if (k.size() <= suffix.size() || k.compare(k.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string stem = k.substr(0, k.size() - suffix.size());
    const auto dot = stem.rfind('.');
    if (dot == std::string::npos) continue;
    runs[stem.substr(0, dot)].insert(std::stoll(stem.substr(dot + 1)));
  }
  for (auto it = configs.begin(); it != configs.end(); ++it)
    if (!runs.count(it.key()))
      results.push_back(failed("scheduler." + it.key(), "config present but no '<name>.<steps>.init' cases"));
  for (const auto& [name, step_counts] : runs) {
    if (!configs.contains(name)) {
      results.push_back(failed("scheduler." + name, "no config for this sampler in metadata 'configs'"));
      continue;
    }
    for (int64_t steps : step_counts) {
      auto r = sampler_cases(file, configs[name], name, steps, device);
      results.insert(results.end(), r.begin(), r.end());
    }
  }
  TINV_CHECK(!runs.empty(), path, "no sampler cases ('<name>.<steps>.init') found");
  return results;
}

}  // namespace tinv::parity
