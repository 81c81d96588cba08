// Conformance runner over a fixture folder (layout: ../shared/fixtures/README.md).
//
// A fixture folder is either Stable Diffusion (`model/model_index.json`, `cases/*`), SDXL (the
// same with `model/text_encoder_2/`) or BLIP (`model/config.json` of a Blip model,
// `cases/blip.safetensors`). A layout's groups share their names (`--only unet` works on both).
// Each case group is a function returning one CaseResult per case; exceptions inside a case turn into a FAIL with the
// message. Cases run on the device given to run() (`tinv parity --device`): models are loaded there and case inputs
// moved there; the comparisons bring both sides back to the CPU in float64. `tinv parity --dtype bf16` loads the models
// in bfloat16 and casts their floating-point inputs to it; outputs are compared in float64 at the bf16 tolerances
// below.
#pragma once
#include <torch/types.h>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace tinv {
class SafeTensors;
struct StableDiffusion;
class BlipCaptioner;
}  // namespace tinv

namespace tinv::parity {

struct CaseResult {
  std::string name;
  bool pass = false;
  double max_abs = 0.0;
  double rel = 0.0;
  std::string tol;   // e.g. "abs 1e-4", "rel 1e-5", "exact"
  std::string note;  // failure reason, extra info
};

// Comparisons (ours and ref are moved to CPU float64 first).
CaseResult compare_abs(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double tol);
CaseResult compare_rel(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double tol);
// Exact equality of integer tensors (shape and values).
CaseResult compare_exact(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref);
CaseResult failed(const std::string& name, const std::string& reason);
// failed(name, reason) for every name (a group whose setup threw).
std::vector<CaseResult> all_failed(const std::vector<std::string>& names, const std::string& reason);

// bf16 tolerances (`tinv parity --dtype bf16`). bf16 keeps 8 significand bits: unit roundoff
// 2^-9 ~ 2e-3 per rounding, and the errors of the roundings compound over a model's layers
// (and over a sampler's steps), so the absolute error scales with each output's magnitude:
// model outputs are compared by relative error (||ours - ref|| / ||ref||, Frobenius) instead of
// the fixtures' max abs 1e-4. Each bound is about twice the worst error measured over
// tiny-sd15, tiny-sd2v, tiny-sdxl and tiny-blip on libtorch 1.13 CPU (docs/PERFORMANCE.md, "bf16"):
//   kBf16Rel      one model forward (text encoders, UNet, VAE, BLIP; TI final rows): worst 0.026
//                 (tiny-sd15 vae.decode)
//   kBf16LoopRel  a whole sampler loop + VAE decode (pipeline final_latents, image): worst 0.038
//                 (tiny-sd2v pipeline_ddim.image)
//   kBf16InitRel  rows read from bf16 token embeddings (one rounding): worst 1.7e-3
//   kBf16LossRel  TI loss per step (fp32 MSE of the cast prediction; errors average out): worst 9.6e-4
//   kBf16GradRel  d loss / d rows (backward through the bf16 UNet and text encoder): worst 0.080
//                 (tiny-sdxl first_step_grad_g)
// Token ids, greedy BLIP captions, gradient routing and file layouts stay exact; the scheduler
// group keeps its fp32 tolerances (samplers and the noise schedule run in float32).
inline constexpr double kBf16Rel = 5e-2;
inline constexpr double kBf16LoopRel = 8e-2;
inline constexpr double kBf16InitRel = 5e-3;
inline constexpr double kBf16LossRel = 5e-3;
inline constexpr double kBf16GradRel = 0.15;
// A model output: float32 compare_abs(fp32_abs), bfloat16 compare_rel(bf16_rel).
CaseResult compare_model(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double fp32_abs,
                         torch::ScalarType dtype, double bf16_rel = kBf16Rel);

// Tensor `name` of a case file, as `dtype`, on `device`.
torch::Tensor input(const SafeTensors& file, const std::string& name, const torch::Device& device,
                    torch::ScalarType dtype = torch::kFloat32);

// Runs `body` and turns any exception into failed(name, what()).
CaseResult guarded(const std::string& name, const std::function<CaseResult()>& body);

// A group of cases. `dir` is the fixture folder (holding model/ and cases/), `device` where the
// models and inputs go, `dtype` the models' compute dtype.
using GroupFn = std::function<std::vector<CaseResult>(const std::string& dir, const torch::Device& device,
                                                      torch::ScalarType dtype)>;
struct Group {
  std::string name;    // "tokenizer", "text_encoder", ...
  std::string layout;  // "sd", "sdxl" or "blip"
  GroupFn run;
};

const std::vector<Group>& groups();
// "sd", "sdxl", "blip", or throws if `dir` matches no layout.
std::string detect_layout(const std::string& dir);

// Runs the groups of the folder's layout (all, or those named in `only`), prints one line per
// case and the closing "N passed, M failed". Returns the number of failures; a run in which no
// case ran at all counts as one failure (a runner that checks nothing must not pass).
// `dtype` (kFloat32 or kBFloat16) is the models' weight dtype and that of their floating-point
// inputs; samplers, the noise schedule and the trainer's rows/loss stay float32.
int run(const std::string& dir, const std::vector<std::string>& only, std::ostream& out,
        const torch::Device& device = torch::kCPU, torch::ScalarType dtype = torch::kFloat32);

// The tolerance of a case at `dtype`: `fp32` for float32, `bf16` for bfloat16 (see the
// bf16 tolerances above and docs/PERFORMANCE.md).
double tol_at(torch::ScalarType dtype, double fp32, double bf16);

// The case groups, one file each under src/parity/.
std::vector<CaseResult> run_tokenizer(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_text_encoder(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_unet(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_vae(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_single_file(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_scheduler(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_pipeline(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_ti_train(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_blip(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
// SDXL (parity_sdxl.cpp, parity_sdxl_pipeline.cpp); vae and scheduler reuse the SD groups.
std::vector<CaseResult> run_sdxl_tokenizer(const std::string& dir, const torch::Device& device,
                                           torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_text_encoder(const std::string& dir, const torch::Device& device,
                                              torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_unet(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_single_file(const std::string& dir, const torch::Device& device,
                                             torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_pipeline(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_ti_train(const std::string& dir, const torch::Device& device, torch::ScalarType dtype);
std::vector<CaseResult> run_sdxl_embedding(const std::string& dir, const torch::Device& device,
                                           torch::ScalarType dtype);

// The fixture's single-file checkpoint `file` (dir/model.safetensors) loaded with the configs of
// dir/model, on `device` in `dtype` (parity_single_file.cpp).
StableDiffusion load_fixture_single_file(const std::string& file, const std::string& dir, const torch::Device& device,
                                         torch::ScalarType dtype);

// A BLIP greedy case at bf16 whose tokens `ours` differ from the reference `ref` (prefix tokens
// included; `prefix` of them): the reference tokens fed back to our model (image `embeds`), each
// must be within 0.1 logit RMS of our top logit at its step (parity_blip.cpp).
CaseResult greedy_tie_case(const std::string& name, const BlipCaptioner& cap, const torch::Tensor& embeds,
                           const std::vector<int64_t>& ours, const torch::Tensor& ref, size_t prefix);

}  // namespace tinv::parity
