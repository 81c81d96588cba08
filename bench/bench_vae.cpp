// AutoencoderKL at Stable Diffusion size (preset sd15, random weights), batch 1, no grad,
// 2 intra-op threads: encode 256x256 / 512x512 images, decode 32x32 / 64x64 latents.
// Counters: peak_rss_MB (process peak so far, so run one benchmark per process with
// --benchmark_filter for an isolated figure) and weights_MB.
//
//   build/bench/bench_vae --benchmark_filter=Decode/64
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "common/memory.h"
#include "io/state_dict.h"
#include "models/vae.h"

namespace {

constexpr double kMB = 1024.0 * 1024.0;

tinv::AutoencoderKL& sd_vae() {
  static tinv::AutoencoderKL vae = [] {
    torch::manual_seed(0);
    tinv::AutoencoderKL v(tinv::VaeConfig::sd15());
    tinv::freeze(*v);
    v->eval();
    return v;
  }();
  return vae;
}

void report(benchmark::State& state) {
  state.counters["peak_rss_MB"] = static_cast<double>(tinv::peak_rss_bytes()) / kMB;
  state.counters["weights_MB"] = static_cast<double>(tinv::count_parameters(*sd_vae())) * 4 / kMB;
}

void BM_Encode(benchmark::State& state) {
  auto& vae = sd_vae();
  torch::NoGradGuard no_grad;
  const int64_t size = state.range(0);
  auto image = torch::rand({1, 3, size, size}) * 2 - 1;  // [1, 3, S, S]
  for (auto _ : state) benchmark::DoNotOptimize(vae->encode(image).mean);
  report(state);
}

void BM_Decode(benchmark::State& state) {
  auto& vae = sd_vae();
  torch::NoGradGuard no_grad;
  const int64_t size = state.range(0);
  auto latents = torch::randn({1, 4, size, size});  // [1, 4, s, s]
  for (auto _ : state) benchmark::DoNotOptimize(vae->decode(latents));
  report(state);
}

// One iteration each: a 512x512 decode is tens of seconds on 2 cores.
BENCHMARK(BM_Encode)->Arg(256)->Arg(512)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Decode)->Arg(32)->Arg(64)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
