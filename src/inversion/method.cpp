// Method options of an inversion run: validation, start rows (cross initialisation), the
// sphere's norms, early stopping (see method.h and docs/INVERSION.md).
#include "inversion/method.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "inversion/trainer.h"

namespace tinv {

std::string to_string(OptimizerKind kind) { return kind == OptimizerKind::kSphere ? "sphere" : "adamw"; }
std::string to_string(SphereNorm norm) { return norm == SphereNorm::kInit ? "init" : "mean"; }
std::string to_string(InitSpace space) { return space == InitSpace::kOutput ? "output" : "input"; }

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "adamw") return OptimizerKind::kAdamW;
  if (name == "sphere") return OptimizerKind::kSphere;
  throw Error("--optimizer", "unknown optimizer '" + name + "' (adamw or sphere)");
}

SphereNorm parse_sphere_norm(const std::string& name) {
  if (name == "mean") return SphereNorm::kMean;
  if (name == "init") return SphereNorm::kInit;
  throw Error("--sphere-norm", "unknown norm '" + name + "' (mean or init)");
}

InitSpace parse_init_space(const std::string& name) {
  if (name == "input") return InitSpace::kInput;
  if (name == "output") return InitSpace::kOutput;
  throw Error("--init-space", "unknown space '" + name + "' (input or output)");
}

void MethodOptions::validate() const {
  TINV_CHECK(std::isfinite(vmf_kappa) && vmf_kappa >= 0, "--vmf-kappa", "must be a number >= 0, got ", vmf_kappa);
  TINV_CHECK(vmf_kappa == 0 || optimizer == OptimizerKind::kSphere, "--vmf-kappa",
             "is a prior on the direction and needs --optimizer sphere");
  TINV_CHECK(std::isfinite(reg_init) && reg_init >= 0, "--reg-init", "must be a number >= 0, got ", reg_init);
  TINV_CHECK(t_min >= 0, "--t-min", "must be >= 0, got ", t_min);
  TINV_CHECK(t_max >= -1, "--t-max", "must be >= 0 (or -1: the last timestep), got ", t_max);
  TINV_CHECK(t_max < 0 || t_min <= t_max, "--t-min", "t_min ", t_min, " is above --t-max ", t_max);
  TINV_CHECK(std::isfinite(stop_delta) && stop_delta >= 0 && stop_delta < 1, "--stop-delta", "must be in [0, 1), got ",
             stop_delta);
  TINV_CHECK(stop_patience >= 0, "--stop-patience", "must be >= 0 (0: no early stop), got ", stop_patience);
}

void MethodOptions::validate_timesteps(int64_t n) const {
  const int64_t hi = resolved_t_max(n);
  TINV_CHECK(hi < n, "--t-max", hi, " is not a timestep of the model's schedule [0, ", n - 1, "]");
  TINV_CHECK(t_min <= hi, "--t-min", "t_min ", t_min, " is above the last timestep ", hi, " of the model's schedule");
}

std::map<std::string, std::string> MethodOptions::non_default() const {
  const MethodOptions d;
  std::map<std::string, std::string> m;
  if (optimizer != d.optimizer) m["optimizer"] = to_string(optimizer);
  if (optimizer == OptimizerKind::kSphere) m["sphere_norm"] = to_string(sphere_norm);
  if (vmf_kappa != d.vmf_kappa) m["vmf_kappa"] = format_number(vmf_kappa);
  if (init_space != d.init_space) m["init_space"] = to_string(init_space);
  if (reg_init != d.reg_init) m["reg_init"] = format_number(reg_init);
  if (t_min != d.t_min) m["t_min"] = std::to_string(t_min);
  if (t_max != d.t_max) m["t_max"] = std::to_string(t_max);
  if (stop_patience != d.stop_patience) {
    m["stop_patience"] = std::to_string(stop_patience);
    m["stop_delta"] = format_number(stop_delta);
  }
  return m;
}

torch::Tensor start_rows(ClipTextModel& te, const ClipTokenizer& tok, const std::vector<int64_t>& ids,
                         InitSpace init_space) {
  torch::NoGradGuard no_grad;
  const auto device = te->parameters().front().device();
  const auto id_tensor = torch::tensor(ids, torch::kInt64);
  if (init_space == InitSpace::kInput)
    return te->token_embeddings(id_tensor.to(device)).to(torch::kCPU, torch::kFloat32);
  const int64_t n = static_cast<int64_t>(ids.size());
  TINV_CHECK(n >= 1 && n + 2 <= tok.max_length(), "--init-space", "output: ", n,
             " init tokens do not fit with BOS and EOS in ", tok.max_length(), " positions");
  std::vector<int64_t> seq = {tok.bos_id()};  // as tokenizer.encode(init text): BOS ids EOS pad...
  seq.insert(seq.end(), ids.begin(), ids.end());
  seq.push_back(tok.eos_id());
  seq.resize(static_cast<size_t>(tok.max_length()), tok.pad_id());
  auto input = torch::tensor(seq, torch::kInt64).unsqueeze(0).to(device);        // [1, L]
  auto hidden = te->forward(input);                                              // [1, L, D]
  return hidden[0].slice(0, 1, 1 + n).to(torch::kCPU, torch::kFloat32).clone();  // [n, D]
}

double mean_token_norm(ClipTextModel& te) {
  torch::NoGradGuard no_grad;
  const auto device = te->parameters().front().device();
  const int64_t vocab = te->config().vocab_size;
  double sum = 0;
  for (int64_t lo = 0; lo < vocab; lo += 4096) {  // a slice at a time: token_embeddings copies
    const int64_t hi = std::min(vocab, lo + 4096);
    auto rows = te->token_embeddings(torch::arange(lo, hi, torch::kInt64).to(device));  // [k, D]
    sum += rows.to(torch::kFloat64).norm(2, {1}).sum().item<double>();
  }
  return sum / static_cast<double>(vocab);
}

void apply_method(const MethodOptions& m, ClipTextModel& te, const torch::Tensor& start, TrainerOptions& t,
                  ClipTextModel* te2) {
  if (m.optimizer == OptimizerKind::kSphere) {
    const int64_t n = start.size(0);
    auto norms_of = [&](ClipTextModel& model, const torch::Tensor& part) {  // [n]
      return m.sphere_norm == SphereNorm::kMean ? torch::full({n}, mean_token_norm(model), torch::kFloat32)
                                                : part.to(torch::kFloat32).norm(2, {1});
    };
    if (te2 == nullptr) {
      t.sphere_norms = norms_of(te, start);
    } else {
      const int64_t h1 = te->config().hidden_size;
      TINV_CHECK(start.dim() == 2 && start.size(1) == h1 + (*te2)->config().hidden_size, "--optimizer sphere",
                 "SDXL start rows ", start.sizes(), " are not [n, h1 + h2]");
      t.sphere_norms =
          torch::stack({norms_of(te, start.narrow(1, 0, h1)), norms_of(*te2, start.narrow(1, h1, start.size(1) - h1))},
                       1);  // [n, 2]
    }
    t.sphere.vmf_kappa = m.vmf_kappa;
  }
  t.reg_init = m.reg_init;
}

bool EarlyStop::update(double value) {
  if (!enabled()) return false;
  if (fired_ || !std::isfinite(value)) return fired_;
  ++evaluations_;
  if (best_evaluation_ < 0 || value < best_ * (1 - delta_)) {
    best_ = value;
    best_evaluation_ = evaluations_ - 1;
    since_best_ = 0;
    return false;
  }
  ++since_best_;
  fired_ = since_best_ >= patience_;
  return fired_;
}

}  // namespace tinv
