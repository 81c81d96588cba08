// SDXL-size costs (random weights: UNet 2.57B, CLIP-L 123M, bigG 695M with projection, VAE 84M),
// on the CPU or a GPU.
//
//   OMP_NUM_THREADS=2 build/bench/bench_sdxl --res 512 --modes sample,step --iters 1
//   build-gpu/bench/bench_sdxl --device cuda --res 1024 --modes sample,step --iters 10
//
// Modes (seconds per item, after loading the model once):
//   sample  one sampler step of `tinv generate`: denoise() over a one-step Euler schedule, i.e.
//           the classifier-free-guidance UNet call on [uncond; cond] (batch 2) with the pooled
//           prompts and time_ids, and the sampler update; no grad
//   step    one textual-inversion step of `tinv invert` on SDXL (InversionTrainer with the second
//           encoder): both encoders forward and backward to the learned rows (4 placeholders),
//           UNet forward and backward to its text states, one AdamW over both row sets
//   decode  the VAE decode of one image
// Prints one line per mode with the process's peak RSS so far; run one mode per process for a
// clean peak. A mode that runs out of memory prints "out of memory" and the next one runs.
#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "common/device.h"
#include "common/memory.h"
#include "inversion/trainer.h"
#include "io/state_dict.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Config {
  int64_t res = 512, iters = 1;
  std::string modes = "sample,step", device_name = "cpu";
  std::string tokenizers = std::string(TINV_SHARED_DIR) + "/fixtures/tiny-sdxl/model";
};

struct Draw {
  torch::Tensor latents, noise, t;
};
using Run = std::function<void(const Draw&)>;

void sync(const torch::Device& dev) {
  if (dev.is_cuda()) torch::cuda::synchronize();
}

std::vector<std::string> split_modes(const std::string& modes) {
  std::vector<std::string> out;
  std::stringstream ss(modes);
  for (std::string m; std::getline(ss, m, ',');) {
    if (m != "sample" && m != "step" && m != "decode")
      throw std::invalid_argument("--modes: unknown mode '" + m + "' (sample, step, decode)");
    out.push_back(m);
  }
  return out;
}

tinv::StableDiffusion load(const Config& c, const torch::Device& dev) {
  const double t0 = now();
  auto sd = tinv::random_stable_diffusion(tinv::UNetConfig::sdxl(), tinv::VaeConfig::sdxl(),
                                          tinv::ClipTextConfig::sdxl_l(), 0, tinv::ClipTextConfig::sdxl_g());
  sd.tokenizer = tinv::ClipTokenizer::load(c.tokenizers + "/tokenizer");  // the CLIP vocabulary
  sd.tokenizer_2 = tinv::ClipTokenizer::load(c.tokenizers + "/tokenizer_2");
  sd.text_encoder->to(dev);
  sd.text_encoder_2->to(dev);
  sd.unet->to(dev);
  sd.vae->to(dev);
  sd.device = dev;
  sync(dev);
  const int64_t params = tinv::count_parameters(*sd.unet) + tinv::count_parameters(*sd.text_encoder) +
                         tinv::count_parameters(*sd.text_encoder_2) + tinv::count_parameters(*sd.vae);
  std::printf("load %.1f s, %.2fB parameters (UNet %.2fB), rss %.2f GB\n", now() - t0, params / 1e9,
              tinv::count_parameters(*sd.unet) / 1e9, tinv::current_rss_bytes() / 1e9);
  std::fflush(stdout);
  return sd;
}

// One sampler step: classifier-free guidance on [uncond; cond], no grad.
Run prepare_sample(tinv::StableDiffusion& sd, int64_t res) {
  torch::NoGradGuard no_grad;
  tinv::GenerateOptions go;
  go.width = go.height = res;
  const torch::Tensor time_ids = tinv::sdxl_time_ids(go, res, res);  // [1, 6]
  tinv::ExtraTokens none;
  const tinv::Conditioning cond = tinv::encode_text(sd, none, "a photo of a red cube on a table");
  const tinv::Conditioning uncond{torch::zeros_like(cond.states), torch::zeros_like(cond.pooled)};
  return [&sd, time_ids, cond, uncond](const Draw& d) {
    torch::NoGradGuard no_grad;
    auto sampler = tinv::make_sampler("euler", sd.scheduler);
    sampler->set_timesteps(1);
    tinv::denoise(sd, *sampler, d.latents * sampler->init_noise_sigma(), cond, uncond, 7.5, nullptr, nullptr, time_ids);
  };
}

// One textual-inversion step with both encoders (4 placeholders).
Run prepare_step(tinv::StableDiffusion& sd, int64_t res) {
  auto ids = torch::tensor(sd.tokenizer->tokenize("a red cube toy"), torch::kInt64).to(sd.device);
  auto rows = torch::cat({sd.text_encoder->token_embeddings(ids), sd.text_encoder_2->token_embeddings(ids)}, 1);
  tinv::TrainerOptions opt;
  opt.schedule = tinv::LrSchedule::make(tinv::LrScheduleKind::kConstant, 5e-3, 1000);
  const float r = static_cast<float>(res);
  auto trainer = std::make_shared<tinv::InversionTrainer>(
      *sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler,
      std::vector<std::string>{"<a_0>", "<a_1>", "<a_2>", "<a_3>"}, rows, std::vector<std::string>{"a photo of {}"},
      opt, tinv::SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, torch::tensor({r, r, 0.f, 0.f, r, r})});
  return [trainer](const Draw& d) { trainer->step({{0}, d.t, d.noise, d.latents}); };
}

Run prepare(tinv::StableDiffusion& sd, const std::string& mode, int64_t res) {
  if (mode == "sample") return prepare_sample(sd, res);
  if (mode == "step") return prepare_step(sd, res);
  return [&sd](const Draw& d) {
    torch::NoGradGuard no_grad;
    tinv::decode_latents(sd, d.latents);
  };
}

// Seconds per item of one mode, or the line's reason when it fails (out of memory included).
void time_mode(tinv::StableDiffusion& sd, const Config& c, const std::string& mode) {
  const int64_t h = c.res / 8;
  const auto on = torch::TensorOptions().device(sd.device);
  try {
    const Run run = prepare(sd, mode, c.res);
    double total = 0;
    for (int64_t it = 0; it < c.iters; ++it) {
      const Draw d{torch::randn({1, 4, h, h}, on), torch::randn({1, 4, h, h}, on),
                   torch::randint(0, 1000, {1}, on.dtype(torch::kInt64))};
      sync(sd.device);
      const double s = now();
      run(d);
      sync(sd.device);
      total += now() - s;
    }
    std::printf("%-6s %.3f s/%s   peak rss so far %.2f GB\n", mode.c_str(), total / c.iters,
                mode == "decode" ? "image" : "step", tinv::peak_rss_bytes() / 1e9);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    const bool oom = what.find("not enough memory") != std::string::npos ||
                     what.find("can't allocate memory") != std::string::npos ||
                     what.find("out of memory") != std::string::npos;
    std::printf("%-6s %s   peak rss so far %.2f GB\n", mode.c_str(),
                oom ? "out of memory" : ("failed: " + what.substr(0, what.find('\n'))).c_str(),
                tinv::peak_rss_bytes() / 1e9);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"SDXL-size sampling, textual-inversion and decode costs (random weights)", "bench_sdxl"};
  app.add_option("--res", c.res, "image size in pixels (a multiple of 8)")->check(CLI::PositiveNumber);
  app.add_option("--iters", c.iters, "timed iterations per mode")->check(CLI::PositiveNumber);
  app.add_option("--modes", c.modes, "comma-separated: sample, step, decode");
  app.add_option("--tokenizers", c.tokenizers, "folder with tokenizer/ and tokenizer_2/")
      ->check(CLI::ExistingDirectory);
  app.add_option("--device", c.device_name, "cpu | cuda[:N] | auto");
  CLI11_PARSE(app, argc, argv);
  if (c.res % 8 != 0) {
    std::fprintf(stderr, "bench_sdxl: --res must be a multiple of 8\n");
    return 2;
  }
  try {
    const std::vector<std::string> modes = split_modes(c.modes);
    const torch::Device dev = tinv::resolve_device(tinv::parse_device(c.device_name));
    std::printf("SDXL random weights, %lldx%lld, batch 1, %s, %d threads, %lld iteration(s)\n", (long long)c.res,
                (long long)c.res, dev.str().c_str(), torch::get_num_threads(), (long long)c.iters);
    tinv::StableDiffusion sd = load(c, dev);
    for (const auto& mode : modes) time_mode(sd, c, mode);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sdxl: %s\n", e.what());
    return 2;
  }
  return 0;
}
