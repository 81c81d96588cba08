// CLIP text encoder at SD1.5 size (random weights): forward, and forward+backward with the
// gradient going only to 8 extra (placeholder) rows, as in textual-inversion training.
// Counters: peak_rss_MB (process peak so far, getrusage), tokens/s.
//   build/bench/bench_text_encoder --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "common/memory.h"
#include "text/clip_text_model.h"

namespace {

constexpr int64_t kLength = 77;
constexpr int64_t kExtraRows = 8;

tinv::ClipTextModel& model() {
  static tinv::ClipTextModel m = [] {
    torch::manual_seed(0);
    return tinv::ClipTextModel(tinv::ClipTextConfig::sd15());
  }();
  return m;
}

// BOS, a random prompt with the 8 placeholder ids in it, EOS, padding: [batch, 77].
torch::Tensor prompt_ids(int64_t batch) {
  const auto& c = model()->config();
  torch::manual_seed(1);
  auto ids = torch::full({batch, kLength}, c.eos_token_id, torch::kLong);
  ids.narrow(1, 1, 20).copy_(torch::randint(0, c.vocab_size - 2, {batch, 20}, torch::kLong));
  ids.narrow(1, 5, kExtraRows)
      .copy_(torch::arange(c.vocab_size, c.vocab_size + kExtraRows).expand({batch, kExtraRows}));
  ids.select(1, 0).fill_(c.bos_token_id);
  return ids;
}

void report(benchmark::State& state, int64_t batch) {
  state.counters["peak_rss_MB"] = static_cast<double>(tinv::peak_rss_bytes()) / (1 << 20);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch * kLength), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TextEncoderForward(benchmark::State& state) {
  torch::set_num_threads(2);
  const int64_t batch = state.range(0);
  auto ids = prompt_ids(batch);
  auto extra = torch::randn({kExtraRows, model()->config().hidden_size});
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    auto h = model()->forward(ids, extra);  // [B, 77, 768]
    benchmark::DoNotOptimize(h.data_ptr());
  }
  report(state, batch);
}

void BM_TextEncoderForwardBackward(benchmark::State& state) {
  torch::set_num_threads(2);
  const int64_t batch = state.range(0);
  auto ids = prompt_ids(batch);
  auto extra = torch::randn({kExtraRows, model()->config().hidden_size}).requires_grad_(true);
  for (auto _ : state) {
    auto h = model()->forward(ids, extra);  // [B, 77, 768]
    h.pow(2).mean().backward();
    benchmark::DoNotOptimize(extra.grad().data_ptr());
    extra.mutable_grad().reset();
  }
  report(state, batch);
}

BENCHMARK(BM_TextEncoderForward)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TextEncoderForwardBackward)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
