// BLIP captioning latency on CPU: base size (384 px, 12 + 12 layers, 768 wide), random weights,
// 2 threads. A caption = preprocessing + vision encoder + decoding; decoding is measured with
// and without the key/value cache, greedy and 3 beams, for exactly 20 new tokens after the
// default prompt ([SEP] forbidden until then).
//
//   build/bench/bench_caption --benchmark_filter=.    (each case runs once: it takes seconds)
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "io/image.h"
#include "models/blip.h"
#include "pipelines/caption.h"

namespace {

constexpr int kNewTokens = 20;

tinv::BlipCaptioner& captioner() {
  static tinv::BlipCaptioner cap = [] {
    torch::set_num_threads(2);
    return tinv::BlipCaptioner::random(tinv::BlipConfig::base(), tinv::BlipPreprocessConfig{}, torch::kCPU, 0);
  }();
  return cap;
}

tinv::Image test_image() {
  tinv::Image im(640, 480);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
  return im;
}

const torch::Tensor& image_embeds() {
  static torch::Tensor e = captioner().image_embeds(captioner().preprocess(test_image()));
  return e;
}

void BM_Preprocess(benchmark::State& state) {
  auto im = test_image();
  captioner();  // builds the random model outside the timed loop
  for (auto _ : state) benchmark::DoNotOptimize(captioner().preprocess(im));
}

void BM_VisionEncoder(benchmark::State& state) {
  auto px = captioner().preprocess(test_image());
  for (auto _ : state) benchmark::DoNotOptimize(captioner().image_embeds(px));
}

// args: beams, use_cache
void BM_Decode20(benchmark::State& state) {
  tinv::CaptionOptions o;
  o.beams = static_cast<int>(state.range(0));
  o.use_cache = state.range(1) != 0;
  auto prefix = captioner().prefix_ids(o);
  o.max_new_tokens = kNewTokens;
  o.min_length = static_cast<int>(prefix.size()) + kNewTokens;  // no early stop
  const auto& embeds = image_embeds();
  for (auto _ : state) {
    auto ids = captioner().generate(embeds, prefix, o);
    if (ids.size() != prefix.size() + kNewTokens) state.SkipWithError("unexpected length");
  }
  state.counters["s_per_token"] =
      benchmark::Counter(kNewTokens, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetLabel(std::string(o.beams == 1 ? "greedy" : "beam 3") + (o.use_cache ? ", kv cache" : ", no cache"));
}

}  // namespace

BENCHMARK(BM_Preprocess)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_VisionEncoder)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_Decode20)
    ->Args({1, 1})
    ->Args({1, 0})
    ->Args({3, 1})
    ->Args({3, 0})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

BENCHMARK_MAIN();
