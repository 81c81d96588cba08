// SD1.5-size UNet on CPU (random weights, 2 threads): forward, and forward+backward with frozen
// weights and a gradient only to encoder_hidden_states (the textual-inversion step), at 32x32 and
// 64x64 latents, batch 1, text [1, 77, 768]. Also the machine's rate on a large 3x3 convolution
// through the same libtorch, and micro benchmarks of the non-convolution parts (self-attention at
// 4096 tokens, GroupNorm+SiLU) to see where the time goes.
//
//   build/bench/bench_unet --benchmark_min_time=0.01
//
// Counters: GFLOP = analytic forward FLOPs (2 per multiply-add of convolutions, linears and
// attention matmuls); floor_s = 2 x forward FLOPs / conv rate (the backward to the data costs
// about one forward: no weight gradients); x_floor = measured / floor_s; peak_RSS_GB (process).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "common/memory.h"
#include "io/state_dict.h"
#include "models/unet.h"
#include "nn/attention_ops.h"

namespace {

using tinv::UNetConfig;

struct FlopCount {
  double conv = 0, linear = 0, attention = 0;
  double total() const { return conv + linear + attention; }
};

// Walks the architecture of `c` at latent size h x w with `len` text tokens.
FlopCount unet_forward_flops(const UNetConfig& c, int64_t h, int64_t w, int64_t len) {
  FlopCount f;
  auto conv = [&](double ci, double co, double k, double hw) { f.conv += 2 * ci * co * k * k * hw; };
  auto lin = [&](double in, double out, double tokens) { f.linear += 2 * in * out * tokens; };
  double temb = c.time_embed_dim(), cross = c.cross_attention_dim;
  auto resnet = [&](double in, double out, double hw) {
    conv(in, out, 3, hw);
    conv(out, out, 3, hw);
    if (in != out) conv(in, out, 1, hw);
    lin(temb, out, 1);
  };
  auto transformer = [&](double ch, double hw, int64_t layers) {
    if (c.use_linear_projection)
      lin(ch, ch, 2 * hw);
    else
      conv(ch, ch, 1, 2 * hw);
    for (int64_t k = 0; k < layers; ++k) {
      lin(ch, ch, 4 * hw);                  // attn1 q, k, v, out
      f.attention += 2 * 2 * hw * hw * ch;  // QK^T and PV over all heads
      lin(ch, ch, 2 * hw);                  // attn2 q, out
      lin(cross, ch, 2.0 * len);            // attn2 k, v
      f.attention += 2 * 2 * hw * len * ch;
      lin(ch, 8 * ch, hw);  // GEGLU proj
      lin(4 * ch, ch, hw);  // ff.net.2
    }
  };
  int64_t n = c.num_blocks();
  const auto& ch = c.block_out_channels;
  lin(ch[0], temb, 1);
  lin(temb, temb, 1);
  conv(c.in_channels, ch[0], c.conv_in_kernel, h * w);
  struct Skip {
    int64_t ch, h, w;
  };
  std::vector<Skip> skips{{ch[0], h, w}};
  int64_t x = ch[0];
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < c.layers_per_block[i]; ++j) {
      resnet(x, ch[i], h * w);
      x = ch[i];
      if (c.down_has_attention(i)) transformer(x, h * w, c.transformer_layers_per_block[i]);
      skips.push_back({x, h, w});
    }
    if (i < n - 1) {
      h = (h + 1) / 2, w = (w + 1) / 2;
      conv(x, x, 3, h * w);
      skips.push_back({x, h, w});
    }
  }
  if (!c.mid_block_type.empty()) {
    resnet(x, x, h * w);
    transformer(x, h * w, c.transformer_layers_per_block[n - 1]);
    resnet(x, x, h * w);
  }
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = n - 1 - i;
    for (int64_t j = 0; j <= c.layers_per_block[r]; ++j) {
      Skip s = skips.back();
      skips.pop_back();
      resnet(x + s.ch, ch[r], h * w);
      x = ch[r];
      if (c.up_has_attention(i)) transformer(x, h * w, c.transformer_layers_per_block[r]);
    }
    if (i < n - 1) {
      h = skips.back().h, w = skips.back().w;
      conv(x, x, 3, h * w);
    }
  }
  conv(ch[0], c.out_channels, c.conv_out_kernel, h * w);
  return f;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The machine is shared: besides wall time, every figure is also taken in process CPU time
// (all threads), whose ratios stay meaningful when other jobs steal the cores.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

double g_conv_rate = 0;      // FLOP per wall second of the large 3x3 convolution (run first)
double g_conv_rate_cpu = 0;  // FLOP per process-CPU second of the same

void set_threads() { torch::set_num_threads(2); }

tinv::UNet2DConditionModel& sd15_unet() {
  static tinv::UNet2DConditionModel* unet = [] {
    set_threads();
    auto* u = new tinv::UNet2DConditionModel(UNetConfig::sd15());  // libtorch default init
    tinv::freeze(**u);
    (*u)->eval();
    std::printf("SD1.5 UNet: %.1f M parameters, RSS after build %.2f GB\n", tinv::count_parameters(**u) / 1e6,
                tinv::current_rss_bytes() / 1e9);
    // Warm-up (oneDNN primitive creation for the 32x32 shapes): one forward + backward.
    auto ctx = torch::randn({1, 77, 768}).requires_grad_(true);
    (*u)->forward(torch::randn({1, 4, 32, 32}), torch::tensor({500}), ctx).sum().backward();
    return u;
  }();
  return *unet;
}

void rss_counter(benchmark::State& state) { state.counters["peak_RSS_GB"] = tinv::peak_rss_bytes() / 1e9; }

void BM_Conv3x3Rate(benchmark::State& state) {
  set_threads();
  torch::NoGradGuard no_grad;
  auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(320, 320, 3).padding(1));
  auto x = torch::randn({1, 320, 64, 64});
  conv(x);  // warm-up (primitive creation)
  double flops = 2.0 * 320 * 320 * 9 * 64 * 64, total = 0, cpu = 0;
  int64_t iters = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu_seconds();
    benchmark::DoNotOptimize(conv(x));
    cpu += cpu_seconds() - c0;
    total += seconds_since(t0);
    ++iters;
  }
  g_conv_rate = flops * iters / total;
  g_conv_rate_cpu = flops * iters / cpu;
  state.counters["GFLOP/s"] = g_conv_rate / 1e9;
  state.counters["GFLOP/cpu_s"] = g_conv_rate_cpu / 1e9;
}

// Self-attention of the first level at 64x64 latents: [1, 8, 4096, 40]; arg 0: forward (0) or
// forward + backward (1); arg 1: query rows per call (0: one call, the op's own chunking).
void BM_SelfAttention4096(benchmark::State& state) {
  set_threads();
  auto q = torch::randn({1, 8, 4096, 40}).requires_grad_(true);
  auto k = torch::randn({1, 8, 4096, 40}), v = torch::randn({1, 8, 4096, 40});
  bool backward = state.range(0) != 0;
  int64_t rows = state.range(1);
  auto attend = [&] {
    if (rows == 0) return tinv::dot_product_attention(q, k, v);
    std::vector<torch::Tensor> parts;
    for (int64_t r = 0; r < 4096; r += rows)
      parts.push_back(tinv::dot_product_attention(q.narrow(2, r, std::min<int64_t>(rows, 4096 - r)), k, v));
    return torch::cat(parts, 2);
  };
  double cpu = 0;
  for (auto _ : state) {
    double c0 = cpu_seconds();
    if (backward) {
      attend().sum().backward();
    } else {
      torch::NoGradGuard no_grad;
      benchmark::DoNotOptimize(attend());
    }
    cpu += cpu_seconds() - c0;
  }
  double flops = 2.0 * 2 * 4096.0 * 4096 * 320 * (backward ? 2 : 1);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/cpu_s"] = flops * state.iterations() / cpu / 1e9;
}

// Parts of one 1024-row chunk of that attention (no grad): 0 q@k^T (matmul on head views),
// 1 baddbmm with the scale fused, 2 scale, 3 softmax, 4 probs@v.
void BM_AttentionParts(benchmark::State& state) {
  set_threads();
  torch::NoGradGuard no_grad;
  auto q = torch::randn({1, 8, 1024, 40}), k = torch::randn({1, 8, 4096, 40});
  auto v = torch::randn({1, 8, 4096, 40});
  auto scores = torch::matmul(q, k.transpose(-1, -2));
  auto probs = torch::softmax(scores, -1);
  auto q3 = q.reshape({8, 1024, 40}), kt3 = k.reshape({8, 4096, 40}).transpose(1, 2);
  for (auto _ : state) {
    switch (state.range(0)) {
      case 0: benchmark::DoNotOptimize(torch::matmul(q, k.transpose(-1, -2))); break;
      case 1: benchmark::DoNotOptimize(torch::baddbmm(torch::empty({8, 1024, 4096}), q3, kt3, 0.0, 0.158)); break;
      case 2: benchmark::DoNotOptimize(scores * 0.158); break;
      case 3: benchmark::DoNotOptimize(torch::softmax(scores, -1)); break;
      case 4: benchmark::DoNotOptimize(torch::matmul(probs, v)); break;
    }
  }
}

// GroupNorm(32, 320) + SiLU on [1, 320, 64, 64], forward + backward.
void BM_GroupNormSiLU64(benchmark::State& state) {
  set_threads();
  auto gn = torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, 320));
  tinv::freeze(*gn);
  auto x = torch::randn({1, 320, 64, 64}).requires_grad_(true);
  for (auto _ : state) torch::silu(gn(x)).sum().backward();
}

void BM_UNetForward(benchmark::State& state) {
  auto& unet = sd15_unet();
  int64_t s = state.range(0);
  auto sample = torch::randn({1, 4, s, s}), ctx = torch::randn({1, 77, 768});
  torch::NoGradGuard no_grad;
  double cpu = 0;
  for (auto _ : state) {
    double c0 = cpu_seconds();
    benchmark::DoNotOptimize(unet->forward(sample, torch::tensor({500}), ctx));
    cpu += cpu_seconds() - c0;
  }
  auto f = unet_forward_flops(unet->config(), s, s, 77);
  state.counters["GFLOP"] = f.total() / 1e9;
  state.counters["GFLOP/s"] = benchmark::Counter(f.total() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["cpu_s"] = cpu / state.iterations();
  if (g_conv_rate_cpu > 0) state.counters["x_floor_cpu"] = cpu / state.iterations() / (f.total() / g_conv_rate_cpu);
  rss_counter(state);
}

void BM_UNetForwardBackward(benchmark::State& state) {
  auto& unet = sd15_unet();
  int64_t s = state.range(0);
  auto sample = torch::randn({1, 4, s, s}), noise = torch::randn({1, 4, s, s});
  auto ctx = torch::randn({1, 77, 768}).requires_grad_(true);
  double total = 0, cpu = 0;
  int64_t iters = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu_seconds();
    auto loss = torch::mse_loss(unet->forward(sample, torch::tensor({500}), ctx), noise);
    loss.backward();
    ctx.mutable_grad().reset();
    cpu += cpu_seconds() - c0;
    total += seconds_since(t0);
    ++iters;
  }
  auto f = unet_forward_flops(unet->config(), s, s, 77);
  state.counters["GFLOP_fwd"] = f.total() / 1e9;
  state.counters["attn_share"] = f.attention / f.total();
  if (g_conv_rate > 0) {
    double floor = 2 * f.total() / g_conv_rate;
    state.counters["floor_s"] = floor;
    state.counters["x_floor"] = total / iters / floor;
    state.counters["cpu_s"] = cpu / iters;
    state.counters["x_floor_cpu"] = cpu / iters / (2 * f.total() / g_conv_rate_cpu);
  }
  rss_counter(state);
}

}  // namespace

BENCHMARK(BM_Conv3x3Rate)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SelfAttention4096)
    ->Args({0, 0})
    ->Args({0, 64})
    ->Args({0, 256})
    ->Args({1, 0})
    ->Args({1, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionParts)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GroupNormSiLU64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_UNetForward)->Arg(32)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_UNetForwardBackward)->Arg(32)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
