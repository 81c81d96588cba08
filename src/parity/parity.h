// Conformance runner over a fixture folder (layout: ../shared/fixtures/README.md).
//
// A fixture folder is either Stable Diffusion (`model/model_index.json`, `cases/*`), SDXL (the
// same with `model/text_encoder_2/`) or BLIP (`model/config.json` of a Blip model,
// `cases/blip.safetensors`). A layout's groups share their names (`--only unet` works on both).
// Each case group is a function returning one CaseResult per case; exceptions inside a case turn into a FAIL with the message.
// Cases run on the device given to run() (`tinv parity --device`): models are loaded there and
// case inputs moved there; the comparisons bring both sides back to the CPU in float64.
#pragma once
#include <torch/types.h>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace tinv {
class SafeTensors;
}

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
CaseResult compare_abs(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref,
                       double tol);
CaseResult compare_rel(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref,
                       double tol);
// Exact equality of integer tensors (shape and values).
CaseResult compare_exact(const std::string& name, const torch::Tensor& ours,
                         const torch::Tensor& ref);
CaseResult failed(const std::string& name, const std::string& reason);
// failed(name, reason) for every name (a group whose setup threw).
std::vector<CaseResult> all_failed(const std::vector<std::string>& names, const std::string& reason);

// Tensor `name` of a case file, as `dtype`, on `device`.
torch::Tensor input(const SafeTensors& file, const std::string& name, const torch::Device& device,
                    torch::ScalarType dtype = torch::kFloat32);

// Runs `body` and turns any exception into failed(name, what()).
CaseResult guarded(const std::string& name, const std::function<CaseResult()>& body);

// A group of cases. `dir` is the fixture folder (holding model/ and cases/), `device` where the
// models and inputs go.
using GroupFn =
    std::function<std::vector<CaseResult>(const std::string& dir, const torch::Device& device)>;
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
int run(const std::string& dir, const std::vector<std::string>& only, std::ostream& out,
        const torch::Device& device = torch::kCPU);

// The case groups, one file each under src/parity/.
std::vector<CaseResult> run_tokenizer(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_text_encoder(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_unet(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_vae(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_single_file(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_scheduler(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_pipeline(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_ti_train(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_blip(const std::string& dir, const torch::Device& device);
// SDXL (parity_sdxl.cpp, parity_sdxl_pipeline.cpp); vae and scheduler reuse the SD groups.
std::vector<CaseResult> run_sdxl_tokenizer(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_text_encoder(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_unet(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_single_file(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_pipeline(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_ti_train(const std::string& dir, const torch::Device& device);
std::vector<CaseResult> run_sdxl_embedding(const std::string& dir, const torch::Device& device);

}  // namespace tinv::parity
