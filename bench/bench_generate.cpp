// One sampler step of text-to-image generation at Stable Diffusion 1.5 size (random weights):
// a batched classifier-free-guidance UNet call on [uncond; cond] (2 items) plus the DDIM step,
// at 256x256 (32x32 latents) and 512x512 (64x64 latents), fp32, no grad, 2 intra-op threads.
// Also the VAE decode of one image at each size. Counters: peak_rss_MB (process peak so far:
// run one size per process with --benchmark_filter for an isolated figure), weights_MB.
//
//   build/bench/bench_generate --benchmark_filter=Step/256
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "common/memory.h"
#include "io/state_dict.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"

namespace {

constexpr double kMB = 1024.0 * 1024.0;

tinv::StableDiffusion& sd15() {
  static tinv::StableDiffusion sd =
      tinv::random_stable_diffusion(tinv::UNetConfig::sd15(), tinv::VaeConfig::sd15(), tinv::ClipTextConfig::sd15(), 0);
  return sd;
}

void report(benchmark::State& state) {
  auto& sd = sd15();
  int64_t params =
      tinv::count_parameters(*sd.unet) + tinv::count_parameters(*sd.vae) + tinv::count_parameters(*sd.text_encoder);
  state.counters["peak_rss_MB"] = static_cast<double>(tinv::peak_rss_bytes()) / kMB;
  state.counters["weights_MB"] = static_cast<double>(params) * 4 / kMB;
}

// Seconds per sampler step: denoise() over a one-step schedule is exactly one CFG UNet call
// (batch 2) and one sampler step.
void BM_Step(benchmark::State& state) {
  auto& sd = sd15();
  torch::NoGradGuard no_grad;
  const int64_t size = state.range(0), f = sd.vae_config.downscale();
  auto sampler = tinv::make_sampler("ddim", sd.scheduler);
  sampler->set_timesteps(1);
  auto latents = torch::randn({1, 4, size / f, size / f});  // [1, 4, h, w]
  auto cond = torch::randn({1, 77, 768});                   // [1, 77, 768]
  auto uncond = torch::randn({1, 77, 768});
  for (auto _ : state) benchmark::DoNotOptimize(tinv::denoise(sd, *sampler, latents, cond, uncond, 7.5, nullptr));
  report(state);
}

void BM_Decode(benchmark::State& state) {
  auto& sd = sd15();
  const int64_t size = state.range(0), f = sd.vae_config.downscale();
  auto latents = torch::randn({1, 4, size / f, size / f});  // [1, 4, h, w]
  for (auto _ : state) benchmark::DoNotOptimize(tinv::decode_latents(sd, latents));
  report(state);
}

// One iteration each: a 512x512 step is tens of seconds on 2 cores.
BENCHMARK(BM_Step)->Arg(256)->Arg(512)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_Decode)->Arg(256)->Arg(512)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
