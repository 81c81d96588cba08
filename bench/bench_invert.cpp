// Textual-inversion step cost at SD1.5 size (random weights), on the CPU or a GPU.
//
//   OMP_NUM_THREADS=2 build/bench/bench_invert --res 256 --batch 1 --modes parts,step,naive --iters 1
//   build-gpu/bench/bench_invert --device cuda --res 512 --modes step --iters 100
//   OMP_NUM_THREADS=2 build/bench/bench_invert --res 256 --batch 1 --modes step --iters 2 --dtype bf16
//
// Modes (seconds per step, each after loading the model once):
//   parts  UNet forward+backward (grad to encoder states only) + text encoder forward+backward
//          (grad to the extra rows only), measured alone: the floor a step cannot beat
//   step   InversionTrainer::step: cached latents, frozen weights, learned rows only
//   naive  what a straightforward port does: every weight requires grad (weight gradients
//          computed), the VAE encodes the image every step, loss.backward() over everything
// Prints one line per mode and the process's peak RSS; run one configuration per process for
// a clean peak (e.g. --res 512 --batch 1 --modes step). Without naive mode the VAE is released
// after loading, as `tinv invert` does once the latents are cached (no previews). On a GPU (--device cuda) each timed
// iteration ends with a device synchronisation, and the RSS figures are the host's.
// --warmup N (default 1) untimed iterations come first (oneDNN's primitives and the allocator's
// pool are made on the first step); --trace FILE writes the autograd profiler's Chrome trace of
// the last timed iteration (aggregate its events by name to see where a step goes).
// --attention-backward auto|store|recompute|autograd (libtorch 1.13, and 2.x in bf16/fp16 on the
// CPU; 2.x runs the fused kernel otherwise): recompute_attention keeping probabilities within the
// memory-derived budget (auto, the default, as `tinv invert`), keeping all of them (store) or
// none (recompute), or autograd through the plain formula.
// --dtype fp32|bf16 (fp16 on CUDA): the weights' and activations' dtype; in step mode the rows,
// AdamW state and loss stay float32 as in `tinv invert --dtype`.
#include <CLI/CLI.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "common/device.h"
#include "common/memory.h"
#include "inversion/trainer.h"
#include "models/stable_diffusion.h"
#include "nn/attention_ops.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Config {
  int64_t res = 256, batch = 1, iters = 1, warmup = 1;
  std::string trace;  // --trace: the autograd profiler's Chrome trace of the last timed iteration
  std::string modes = "parts,step,naive", device_name = "cpu", backward = "auto", dtype_name = "fp32";
  std::string tokenizer_dir = std::string(TINV_SHARED_DIR) + "/fixtures/tiny-sd15/model/tokenizer";
};

// What every mode works on: the model on its device and dtype, one batch of inputs, the rows.
struct Bench {
  torch::Device dev = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  tinv::StableDiffusion sd;
  torch::Tensor image, ids, rows0;
  std::optional<tinv::NoiseSchedule> sched;
  std::unique_ptr<tinv::InversionTrainer> trainer;  // step mode, made on its first iteration
  void sync() const {
    if (dev.is_cuda()) torch::cuda::synchronize();
  }
};

std::vector<std::string> split_modes(const std::string& modes) {
  std::vector<std::string> out;
  std::stringstream ss(modes);
  for (std::string m; std::getline(ss, m, ',');) {
    if (m != "parts" && m != "step" && m != "naive")
      throw std::invalid_argument("--modes: unknown mode '" + m + "' (parts, step, naive)");
    out.push_back(m);
  }
  return out;
}

void load(Bench& b, const Config& c) {
  const double t0 = now();
  b.sd =
      tinv::random_stable_diffusion(tinv::UNetConfig::sd15(), tinv::VaeConfig::sd15(), tinv::ClipTextConfig::sd15(), 0);
  b.sd.tokenizer = tinv::ClipTokenizer::load(c.tokenizer_dir);  // the CLIP vocabulary
  b.sd.text_encoder->to(b.dev, b.dtype);
  b.sd.unet->to(b.dev, b.dtype);
  b.sd.vae->to(b.dev, b.dtype);
  b.sd.device = b.dev;
  b.sd.dtype = b.sd.vae_dtype = b.dtype;
  b.sync();
  std::printf("load %.1f s, rss %.2f GB\n", now() - t0, tinv::current_rss_bytes() / 1e9);
  const int64_t n = 4;
  const auto on = torch::TensorOptions().device(b.dev);
  b.image = (torch::rand({c.batch, 3, c.res, c.res}, on) * 2 - 1).to(b.dtype);
  b.ids = torch::full({c.batch, 77}, 49407, on.dtype(torch::kInt64));
  for (int64_t i = 0; i < n; ++i) b.ids.select(1, 1 + i).fill_(49408 + i);
  b.ids.select(1, 0).fill_(49406);
  b.rows0 = b.sd.text_encoder->token_embeddings(torch::tensor({320, 1125, 539, 1929}, torch::kInt64).to(b.dev));
  b.sched.emplace(b.sd.scheduler);
}

struct Draw {
  torch::Tensor t, noise, latents;
};

// UNet forward+backward (grad to the encoder states only) and the text encoder's backward into
// the rows, alone.
void step_parts(Bench& b, const Draw& d) {
  auto rows = b.rows0.clone().requires_grad_(true);
  auto states = b.sd.text_encoder->forward(b.ids, rows);
  auto st = states.detach().requires_grad_(true);
  auto out = b.sd.unet->forward(b.sched->add_noise(d.latents, d.noise, d.t).to(b.dtype), d.t, st);
  torch::mse_loss(out.to(torch::kFloat32), d.noise).backward();
  states.backward(st.grad());
}

// Every weight requires grad, the VAE encodes every step, backward over everything.
void step_naive(Bench& b, const Draw& d) {
  std::vector<torch::Tensor> params = b.sd.unet->parameters();
  for (const auto& p : b.sd.text_encoder->parameters()) params.push_back(p);
  for (const auto& p : b.sd.vae->parameters()) params.push_back(p);
  for (auto& p : params) p.set_requires_grad(true);
  auto rows = b.rows0.clone().requires_grad_(true);
  auto lat = b.sd.vae->encode(b.image).mean * 0.18215;  // no cache: encode every step
  auto states = b.sd.text_encoder->forward(b.ids, rows);
  auto out = b.sd.unet->forward(b.sched->add_noise(lat.to(torch::kFloat32), d.noise, d.t).to(b.dtype), d.t, states);
  torch::mse_loss(out.to(torch::kFloat32), d.noise).backward();
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
}

// Seconds per iteration of one mode; step mode builds its trainer outside the timing.
double time_mode(Bench& b, const Config& c, const std::string& mode) {
  const int64_t h = c.res / 8;
  const auto on = torch::TensorOptions().device(b.dev);
  double total = 0;
  // Negative iterations are the warm-up: oneDNN creates its primitives and the allocator its pool
  // on the first step, which a training run of hundreds of steps pays once.
  for (int64_t it = -c.warmup; it < c.iters; ++it) {
    const Draw d{torch::randint(0, 1000, {c.batch}, on.dtype(torch::kInt64)), torch::randn({c.batch, 4, h, h}, on),
                 torch::randn({c.batch, 4, h, h}, on)};
    if (mode == "step" && !b.trainer) {
      tinv::TrainerOptions opt;
      opt.schedule = tinv::LrSchedule::make(tinv::LrScheduleKind::kConstant, 5e-3, 1000);
      b.trainer = std::make_unique<tinv::InversionTrainer>(
          *b.sd.tokenizer, b.sd.text_encoder, b.sd.unet, b.sd.scheduler,
          std::vector<std::string>{"<a_0>", "<a_1>", "<a_2>", "<a_3>"}, b.rows0, std::vector<std::string>{"{}"}, opt);
    }
    b.sync();
    const double s = now();
    std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
    if (!c.trace.empty() && it == c.iters - 1)
      prof = std::make_unique<torch::autograd::profiler::RecordProfile>(c.trace);
    if (mode == "parts")
      step_parts(b, d);
    else if (mode == "step")
      b.trainer->step({std::vector<int64_t>(c.batch, 0), d.t, d.noise, d.latents});
    else
      step_naive(b, d);
    b.sync();
    prof.reset();
    if (it >= 0) total += now() - s;
  }
  return total / c.iters;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Textual-inversion step cost at SD1.5 size (random weights)", "bench_invert"};
  app.add_option("--res", c.res, "image size in pixels (a multiple of 8)")->check(CLI::PositiveNumber);
  app.add_option("--batch", c.batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--iters", c.iters, "timed iterations per mode")->check(CLI::PositiveNumber);
  app.add_option("--warmup", c.warmup, "untimed iterations before them")->check(CLI::NonNegativeNumber);
  app.add_option("--trace", c.trace, "write the autograd profiler's Chrome trace of the last timed iteration");
  app.add_option("--modes", c.modes, "comma-separated: parts, step, naive");
  app.add_option("--tokenizer", c.tokenizer_dir, "CLIP tokenizer folder")->check(CLI::ExistingDirectory);
  app.add_option("--device", c.device_name, "cpu | cuda[:N] | auto");
  app.add_option("--attention-backward", c.backward, "libtorch 1.13: auto | store | recompute | autograd")
      ->check(CLI::IsMember({"auto", "store", "recompute", "autograd"}));
  app.add_option("--dtype", c.dtype_name, "fp32 | bf16 | fp16 (CUDA)");
  CLI11_PARSE(app, argc, argv);
  try {
    const std::vector<std::string> modes = split_modes(c.modes);
    tinv::set_attention_recompute(c.backward != "autograd");
    tinv::set_attention_store(c.backward == "store"       ? std::numeric_limits<int64_t>::max()
                              : c.backward == "recompute" ? 0
                                                          : tinv::kAttentionStoreAuto);
    Bench b;
    b.dev = tinv::resolve_device(tinv::parse_device(c.device_name));
    b.dtype = tinv::parse_dtype(c.dtype_name);
    tinv::check_dtype(b.dtype, b.dev);
    std::printf(
        "SD1.5 random weights, %lldx%lld, batch %lld, %s, %s, %d threads, %lld iteration(s) after %lld warm-up, "
        "libtorch %s, malloc %s, attention backward: %s\n",
        (long long)c.res, (long long)c.res, (long long)c.batch, b.dev.str().c_str(), tinv::dtype_name(b.dtype).c_str(),
        torch::get_num_threads(), (long long)c.iters, (long long)c.warmup, TORCH_VERSION, tinv::malloc_implementation(),
        tinv::fused_attention(b.dtype, b.dev) ? "fused (SDPA)" : c.backward.c_str());
    load(b, c);
    if (std::find(modes.begin(), modes.end(), "naive") == modes.end()) {
      // Only naive mode encodes images; `tinv invert` releases the VAE after caching the
      // latents (no --preview-every), so the step's peak is measured without it too.
      b.sd.vae = tinv::AutoencoderKL(nullptr);
      std::printf("vae released (latents cached, as tinv invert without previews), rss %.2f GB\n",
                  tinv::current_rss_bytes() / 1e9);
    }
    for (const auto& mode : modes) {
      const double per_step = time_mode(b, c, mode);
      std::printf("%-6s %.3f s/step   peak rss so far %.2f GB\n", mode.c_str(), per_step, tinv::peak_rss_bytes() / 1e9);
      std::fflush(stdout);
    }
    if (!tinv::fused_attention(b.dtype, b.dev) && c.backward != "autograd") {
      const int64_t budget = tinv::attention_store_budget();
      if (budget == std::numeric_limits<int64_t>::max())
        std::printf("attention probabilities kept for the backward: all\n");
      else
        std::printf("attention probabilities kept for the backward: up to %.2f GB\n", budget / 1e9);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_invert: %s\n", e.what());
    return 2;
  }
  return 0;
}
