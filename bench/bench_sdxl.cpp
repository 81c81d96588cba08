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
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/device.h"
#include "common/memory.h"
#include "inversion/trainer.h"
#include "io/state_dict.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t res = 512, iters = 1;
  std::string modes = "sample,step", device_name = "cpu";
  std::string tokenizers = std::string(TINV_SHARED_DIR) + "/fixtures/tiny-sdxl/model";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--res")) res = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--modes")) modes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--tokenizers")) tokenizers = argv[i + 1];
    else if (!std::strcmp(argv[i], "--device")) device_name = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_sdxl: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (res <= 0 || res % 8 != 0 || iters <= 0) {
    std::fprintf(stderr, "bench_sdxl: --res must be a positive multiple of 8 and --iters positive\n");
    return 2;
  }
  try {
    const torch::Device dev = tinv::resolve_device(tinv::parse_device(device_name));
    auto sync = [&] {
      if (dev.is_cuda()) torch::cuda::synchronize();
    };
    std::printf("SDXL random weights, %lldx%lld, batch 1, %s, %d threads, %lld iteration(s)\n", (long long)res,
                (long long)res, dev.str().c_str(), torch::get_num_threads(), (long long)iters);
    double t0 = now();
    auto sd = tinv::random_stable_diffusion(tinv::UNetConfig::sdxl(), tinv::VaeConfig::sdxl(),
                                            tinv::ClipTextConfig::sdxl_l(), 0, tinv::ClipTextConfig::sdxl_g());
    sd.tokenizer = tinv::ClipTokenizer::load(tokenizers + "/tokenizer");  // the CLIP vocabulary
    sd.tokenizer_2 = tinv::ClipTokenizer::load(tokenizers + "/tokenizer_2");
    sd.text_encoder->to(dev);
    sd.text_encoder_2->to(dev);
    sd.unet->to(dev);
    sd.vae->to(dev);
    sd.device = dev;
    sync();
    const int64_t params = tinv::count_parameters(*sd.unet) + tinv::count_parameters(*sd.text_encoder) +
                           tinv::count_parameters(*sd.text_encoder_2) + tinv::count_parameters(*sd.vae);
    std::printf("load %.1f s, %.2fB parameters (UNet %.2fB), rss %.2f GB\n", now() - t0, params / 1e9,
                tinv::count_parameters(*sd.unet) / 1e9, tinv::current_rss_bytes() / 1e9);
    std::fflush(stdout);
    const int64_t h = res / 8;
    const auto on = torch::TensorOptions().device(dev);
    tinv::GenerateOptions go;
    go.width = go.height = res;
    const torch::Tensor time_ids = tinv::sdxl_time_ids(go, res, res);  // [1, 6]

    std::stringstream ss(modes);
    for (std::string mode; std::getline(ss, mode, ',');) {
      if (mode != "sample" && mode != "step" && mode != "decode") {
        std::fprintf(stderr, "bench_sdxl: unknown mode %s\n", mode.c_str());
        return 2;
      }
      double total = 0;
      try {
        std::unique_ptr<tinv::InversionTrainer> trainer;
        tinv::ExtraTokens none;
        tinv::Conditioning cond, uncond;
        if (mode == "sample") {
          torch::NoGradGuard no_grad;
          cond = tinv::encode_text(sd, none, "a photo of a red cube on a table");
          uncond = {torch::zeros_like(cond.states), torch::zeros_like(cond.pooled)};
        } else if (mode == "step") {
          auto ids = torch::tensor(sd.tokenizer->tokenize("a red cube toy"), torch::kInt64).to(dev);
          auto rows = torch::cat({sd.text_encoder->token_embeddings(ids), sd.text_encoder_2->token_embeddings(ids)}, 1);
          tinv::TrainerOptions opt;
          opt.schedule = tinv::LrSchedule::make(tinv::LrScheduleKind::kConstant, 5e-3, 1000);
          const float r = static_cast<float>(res);
          trainer = std::make_unique<tinv::InversionTrainer>(
              *sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler,
              std::vector<std::string>{"<a_0>", "<a_1>", "<a_2>", "<a_3>"}, rows, std::vector<std::string>{"a photo of {}"},
              opt, tinv::SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, torch::tensor({r, r, 0.f, 0.f, r, r})});
        }
        for (int64_t it = 0; it < iters; ++it) {
          auto latents = torch::randn({1, 4, h, h}, on);
          auto noise = torch::randn({1, 4, h, h}, on);
          auto t = torch::randint(0, 1000, {1}, on.dtype(torch::kInt64));
          sync();
          const double s = now();
          if (mode == "sample") {
            torch::NoGradGuard no_grad;
            auto sampler = tinv::make_sampler("euler", sd.scheduler);
            sampler->set_timesteps(1);
            tinv::denoise(sd, *sampler, latents * sampler->init_noise_sigma(), cond, uncond, 7.5, nullptr, nullptr,
                          time_ids);
          } else if (mode == "step") {
            trainer->step({{0}, t, noise, latents});
          } else {
            torch::NoGradGuard no_grad;
            tinv::decode_latents(sd, latents);
          }
          sync();
          total += now() - s;
        }
        std::printf("%-6s %.2f s/%s   peak rss so far %.2f GB\n", mode.c_str(), total / iters,
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sdxl: %s\n", e.what());
    return 1;
  }
  return 0;
}
