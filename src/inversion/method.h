// The method options of one inversion run on top of the base recipe (docs/INVERSION.md,
// "Method options"), shared by `tinv invert` and the variants of `tinv study`:
//
//   tinv::MethodOptions m;            // defaults: today's recipe, draw for draw
//   m.optimizer = tinv::OptimizerKind::kSphere;  // norm-fixed direction optimisation (DTI)
//   m.init_space = tinv::InitSpace::kOutput;     // cross initialisation (Pang et al.)
//   m.t_min = 500;                    // training timesteps in [500, N-1]
//   m.validate();                     // tinv::Error("--optimizer", ...) etc.
//
//   auto start = tinv::start_rows(sd.text_encoder, tok, ids, m.init_space);   // [n, d]
//   tinv::TrainerOptions topt;  ...;  tinv::apply_method(m, sd.text_encoder, start, topt);
//   tinv::RandomStepSource src(cache, templates, batch, N, seed, m.t_min, m.resolved_t_max(N));
//
//   tinv::EarlyStop stop(m.stop_delta, m.stop_patience);
//   if (stop.update(fixed_loss)) ...  // the run stops at this evaluation
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "text/clip_text_model.h"
#include "text/clip_tokenizer.h"

namespace tinv {

struct TrainerOptions;  // inversion/trainer.h

// --optimizer: adamw (AdamW on the rows) | sphere (Riemannian Adam on a fixed-norm sphere).
enum class OptimizerKind { kAdamW, kSphere };
// --sphere-norm: mean (the mean token-embedding norm of the vocabulary) | init (each row's
// initial norm).
enum class SphereNorm { kMean, kInit };
// --init-space: input (token embeddings) | output (the text encoder's output for the init
// tokens: cross initialisation).
enum class InitSpace { kInput, kOutput };

// The option texts above ("adamw", "mean", "input", ...), as the CLI reads them and as
// non_default() writes them into checkpoints and embedding metadata.
std::string to_string(OptimizerKind kind);
std::string to_string(SphereNorm norm);
std::string to_string(InitSpace space);
// The inverses of to_string; each throws tinv::Error naming its option for other text
// ("--optimizer: unknown optimizer 'sgd' (adamw or sphere)").
OptimizerKind parse_optimizer(const std::string& name);
SphereNorm parse_sphere_norm(const std::string& name);
InitSpace parse_init_space(const std::string& name);

struct MethodOptions {
  OptimizerKind optimizer = OptimizerKind::kAdamW;
  SphereNorm sphere_norm = SphereNorm::kMean;  // sphere: the rows' fixed norms
  double vmf_kappa = 0;                        // sphere: von Mises-Fisher prior weight toward the initial
                                               // direction (0: off)
  InitSpace init_space = InitSpace::kInput;
  double reg_init = 0;        // weight of the L2 pull toward the start rows (0: off)
  int64_t t_min = 0;          // training timesteps drawn uniformly from [t_min, t_max]
  int64_t t_max = -1;         // -1: the last timestep (N - 1)
  double stop_delta = 0.01;   // early stop: relative improvement of the fixed-input loss
  int64_t stop_patience = 0;  // early stop after this many evaluations without one (0: off)

  // Checks that need no model; throws tinv::Error naming the option ("--optimizer", ...).
  void validate() const;
  // t_max (resolved) must be a timestep of the model's schedule: throws Error("--t-max", ...).
  void validate_timesteps(int64_t num_train_timesteps) const;
  int64_t resolved_t_max(int64_t num_train_timesteps) const { return t_max < 0 ? num_train_timesteps - 1 : t_max; }
  // The options that differ from the defaults, as key -> value text ("optimizer" -> "sphere");
  // empty for the defaults (checkpoint identity, embedding metadata, report labels).
  std::map<std::string, std::string> non_default() const;
};

// The rows a run starts from for init token ids (no BOS/EOS), [n, d] float32 on the CPU:
//   input   the token-embedding rows of `ids` (the text encoder's input)
//   output  cross initialisation: the text encoder's output (last hidden state, after the final
//           layer norm) at positions 1..n when BOS, ids, EOS, padding to max_length is encoded
//           alone, i.e. row i is the output at the position of init token i.
// Throws tinv::Error("--init-space", ...) for ids that do not fit max_length.
torch::Tensor start_rows(ClipTextModel& text_encoder, const ClipTokenizer& tokenizer, const std::vector<int64_t>& ids,
                         InitSpace init_space);

// Mean L2 norm of the text encoder's token-embedding rows (the vocabulary, added rows excluded).
double mean_token_norm(ClipTextModel& text_encoder);

// Sets the method's fields of `t` for a run that starts at `start` [n, d]: the sphere's norms
// (mean_token_norm for every row, or the rows' own norms) and prior weight, and the pull weight.
// SDXL (`text_encoder_2` given, start [n, h1 + h2]): one norm per encoder part of each row,
// sphere_norms [n, 2], from each encoder's own vocabulary or the part's own norm.
// The default method leaves `t` as it is.
void apply_method(const MethodOptions& m, ClipTextModel& text_encoder, const torch::Tensor& start, TrainerOptions& t,
                  ClipTextModel* text_encoder_2 = nullptr);

// The early-stopping rule on the fixed-input loss (DVAR, "Is This Loss Informative?"): an
// evaluation improves when its value is below best * (1 - delta), best being the lowest value
// that counted as an improvement so far (the first evaluation always does); the run stops at the
// evaluation that makes `patience` evaluations in a row without an improvement.
class EarlyStop {
 public:
  EarlyStop(double delta, int64_t patience) : delta_(delta), patience_(patience) {}
  bool enabled() const { return patience_ > 0; }
  // Feeds one evaluation (non-finite values are ignored); true when the run stops here, and
  // from then on (later values are ignored). Always false when disabled.
  bool update(double value);
  double best() const { return best_; }
  int64_t evaluations() const { return evaluations_; }          // values fed so far
  int64_t best_evaluation() const { return best_evaluation_; }  // 0-based index of best()
  int64_t since_best() const { return since_best_; }

 private:
  double delta_;
  int64_t patience_;
  double best_ = 0;
  int64_t evaluations_ = 0, best_evaluation_ = -1, since_best_ = 0;
  bool fired_ = false;
};

}  // namespace tinv
