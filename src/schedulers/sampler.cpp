// Sampler base, factory, noise sources, and the numpy-exact timestep helpers.
#include "schedulers/sampler.h"

#include <torch/torch.h>

#include <cfenv>
#include <cmath>

#include "common/error.h"
#include "common/shape.h"
#include "schedulers/sampler_math.h"

namespace tinv {
namespace sched {

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(num);
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t k = 0; k < num; ++k) y[k] = static_cast<double>(k) * step + start;
  y[num - 1] = stop;
  return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double len = std::ceil((stop - start) / step);
  std::vector<double> y;
  if (!(len > 0)) return y;
  y.resize(static_cast<size_t>(len));
  // numpy fills from the first two values: delta = (start + step) - start.
  const double delta = (start + step) - start;
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = i == 0 ? start : i == 1 ? start + step : start + static_cast<double>(i) * delta;
  return y;
}

double np_round(double v) { return std::nearbyint(v); }  // FE_TONEAREST: ties to even

std::vector<double> spaced_timesteps(const std::string& spacing, int64_t n_train, int64_t steps, int64_t offset,
                                     bool round_linspace) {
  std::vector<double> t;
  if (spacing == "linspace") {
    t = np_linspace(0, static_cast<double>(n_train - 1), steps);
    if (round_linspace)
      for (auto& v : t) v = np_round(v);
  } else if (spacing == "leading") {
    const int64_t ratio = n_train / steps;
    for (int64_t k = 0; k < steps; ++k) t.push_back(static_cast<double>(k * ratio + offset));
  } else if (spacing == "trailing") {
    const double ratio = static_cast<double>(n_train) / static_cast<double>(steps);
    t = np_arange(static_cast<double>(n_train), 0.0, -ratio);
    for (auto& v : t) v = np_round(v) - 1;
    return t;  // already descending
  } else {
    throw Error("scheduler config", "unknown timestep_spacing '" + spacing + "'");
  }
  return {t.rbegin(), t.rend()};
}

std::vector<double> np_interp(const std::vector<double>& x, const std::vector<double>& fp) {
  const int64_t n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    if (v <= 0) {
      out[i] = fp[0];
    } else if (v >= static_cast<double>(n - 1)) {
      out[i] = fp[n - 1];
    } else {
      const int64_t j = static_cast<int64_t>(std::floor(v));
      if (v == static_cast<double>(j)) {
        out[i] = fp[j];
      } else {
        const double slope = (fp[j + 1] - fp[j]) / 1.0;
        out[i] = slope * (v - static_cast<double>(j)) + fp[j];
      }
    }
  }
  return out;
}

std::vector<float> train_sigmas(const torch::Tensor& alphas_cumprod) {
  auto s = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().contiguous();  // float32, as diffusers
  return {s.data_ptr<float>(), s.data_ptr<float>() + s.numel()};
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps) {
  const double rho = 7.0;
  const double min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
  std::vector<double> s;
  for (double r : np_linspace(0, 1, steps)) s.push_back(std::pow(max_inv + r * (min_inv - max_inv), rho));
  return s;
}

std::vector<float> log_of(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::log(v[i]);
  return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  // argmax of cumsum(log_sigma - log_sigmas >= 0): the last index with log_sigmas <= log_sigma
  // in the ascending table (0 when there is none), clipped to n - 2.
  int64_t low = 0, count = 0, best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (log_sigma - log_sigmas[i] >= 0) ++count;
    if (count > best) best = count, low = i;
  }
  low = std::min(low, n - 2);
  const float lo = log_sigmas[low], hi = log_sigmas[low + 1];
  double w = (lo - log_sigma) / static_cast<double>(lo - hi);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

torch::Tensor to_float_tensor(const std::vector<double>& v) {
  return torch::tensor(v, torch::kFloat64).to(torch::kFloat32);
}

torch::Tensor to_int_tensor(const std::vector<double>& v) {
  return torch::tensor(v, torch::kFloat64).to(torch::kInt64);
}

void ddpm_x0_eps(const torch::Tensor& out, const torch::Tensor& x, double abar, const std::string& prediction_type,
                 torch::Tensor* x0, torch::Tensor* eps) {
  const double a = std::sqrt(abar), b = std::sqrt(1 - abar);
  if (prediction_type == "epsilon") {
    *x0 = (x - b * out) / a;
    *eps = out;
  } else if (prediction_type == "sample") {
    *x0 = out;
    *eps = (x - a * out) / b;
  } else if (prediction_type == "v_prediction") {
    *x0 = a * x - b * out;
    *eps = a * out + b * x;
  } else {
    throw Error("sampler", "unknown prediction_type '" + prediction_type + "'");
  }
}

}  // namespace sched

double Sampler::timestep(int64_t step_index) const {
  check_index(step_index);
  return timesteps_[step_index].item<double>();
}

void Sampler::check_index(int64_t step_index) const {
  TINV_CHECK(timesteps_.defined(), name(), "set_timesteps() must be called before sampling");
  TINV_CHECK(step_index >= 0 && step_index < num_steps(), name(), "step index ", step_index, " outside [0, ",
             num_steps(), ")");
}

void Sampler::check_steps(int64_t steps) const {
  TINV_CHECK(steps >= 1, name(), "number of steps must be >= 1, got ", steps);
  TINV_CHECK(steps <= cfg_.num_train_timesteps, name(), "number of steps ", steps, " exceeds num_train_timesteps ",
             cfg_.num_train_timesteps);
}

torch::Tensor Sampler::draw(const NoiseSource& noise, const torch::Tensor& like) const {
  TINV_CHECK(static_cast<bool>(noise), name(), "this sampler is stochastic and needs a noise source");
  auto n = noise(like);
  TINV_CHECK(n.sizes() == like.sizes(), name(), "noise source gave ", shape_str(n.sizes().vec()), ", expected ",
             shape_str(like.sizes().vec()));
  return n.to(like.device(), like.scalar_type());
}

NoiseSource seeded_noise(uint64_t seed) {
  auto gen = std::make_shared<at::Generator>(at::detail::createCPUGenerator(seed));
  return [gen](const torch::Tensor& like) {
    auto n = torch::randn(like.sizes(), *gen, torch::TensorOptions().dtype(torch::kFloat32));
    return n.to(like.device(), like.scalar_type());
  };
}

NoiseSource noise_sequence(const torch::Tensor& noises) {
  auto next = std::make_shared<int64_t>(0);
  return [noises, next](const torch::Tensor& like) {
    TINV_CHECK(*next < noises.size(0), "noise_sequence", "exhausted after ", noises.size(0), " draws");
    return noises[(*next)++];
  };
}

namespace {
struct Entry {
  const char* name;
  const char* diffusers_class;
};
const Entry kSamplers[] = {
    {"ddim", "DDIMScheduler"},
    {"euler", "EulerDiscreteScheduler"},
    {"euler_a", "EulerAncestralDiscreteScheduler"},
    {"dpmpp_2m", "DPMSolverMultistepScheduler"},
    {"pndm", "PNDMScheduler"},
};
}  // namespace

std::vector<std::string> sampler_names() {
  std::vector<std::string> names;
  for (const auto& e : kSamplers) names.emplace_back(e.name);
  return names;
}

std::string sampler_name_for_class(const std::string& cls) {
  for (const auto& e : kSamplers)
    if (cls == e.diffusers_class) return e.name;
  throw Error("scheduler config", "unsupported scheduler class '" + cls +
                                      "' (supported: DDIMScheduler, EulerDiscreteScheduler, "
                                      "EulerAncestralDiscreteScheduler, "
                                      "DPMSolverMultistepScheduler, PNDMScheduler)");
}

std::unique_ptr<Sampler> make_sampler(const std::string& name_in, const SchedulerConfig& cfg, double eta) {
  const std::string name = name_in == "default" ? sampler_name_for_class(cfg.class_name) : name_in;
  for (const auto& e : kSamplers) {
    if (name != e.name) continue;
    SchedulerConfig c = cfg.for_class(e.diffusers_class);
    c.validate("scheduler config");
    if (name == "ddim") return sched::make_ddim(c, eta);
    if (name == "euler") return sched::make_euler(c);
    if (name == "euler_a") return sched::make_euler_ancestral(c);
    if (name == "dpmpp_2m") return sched::make_dpmpp_2m(c);
    return sched::make_pndm(c);
  }
  std::string known;
  for (const auto& n : sampler_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("sampler", "unknown sampler '" + name_in + "' (known: " + known + ", default)");
}

}  // namespace tinv
