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
// a clean peak (e.g. --res 512 --batch 1 --modes step). On a GPU (--device cuda) each timed
// iteration ends with a device synchronisation, and the RSS figures are the host's.
// --attention-backward recompute|autograd (libtorch 1.13; 2.x always runs the fused kernel):
// recompute_attention's chunked backward (default) or autograd's stored probabilities.
// --dtype fp32|bf16 (fp16 on CUDA): the weights' and activations' dtype; in step mode the rows,
// AdamW state and loss stay float32 as in `tinv invert --dtype`.
#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/device.h"
#include "common/memory.h"
#include "nn/attention_ops.h"
#include "inversion/trainer.h"
#include "models/stable_diffusion.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t res = 256, batch = 1, iters = 1;
  std::string modes = "parts,step,naive", device_name = "cpu", backward = "recompute",
              dtype_name = "fp32";
  std::string tokenizer_dir = std::string(TINV_SHARED_DIR) + "/fixtures/tiny-sd15/model/tokenizer";
  CLI::App app{"Textual-inversion step cost at SD1.5 size (random weights)", "bench_invert"};
  app.add_option("--res", res, "image size in pixels (a multiple of 8)")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--iters", iters, "timed iterations per mode")->check(CLI::PositiveNumber);
  app.add_option("--modes", modes, "comma-separated: parts, step, naive");
  app.add_option("--tokenizer", tokenizer_dir, "CLIP tokenizer folder")->check(CLI::ExistingDirectory);
  app.add_option("--device", device_name, "cpu | cuda[:N] | auto");
  app.add_option("--attention-backward", backward, "libtorch 1.13: recompute | autograd")
      ->check(CLI::IsMember({"recompute", "autograd"}));
  app.add_option("--dtype", dtype_name, "fp32 | bf16 | fp16 (CUDA)");
  CLI11_PARSE(app, argc, argv);
  {
    std::stringstream check(modes);
    for (std::string m; std::getline(check, m, ',');)
      if (m != "parts" && m != "step" && m != "naive") {
        std::fprintf(stderr, "--modes: unknown mode '%s' (parts, step, naive)\n", m.c_str());
        return 2;
      }
  }
  tinv::set_attention_recompute(backward == "recompute");
  const torch::Device dev = tinv::resolve_device(tinv::parse_device(device_name));
  const torch::ScalarType dtype = tinv::parse_dtype(dtype_name);
  tinv::check_dtype(dtype, dev);
  auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  std::printf("SD1.5 random weights, %lldx%lld, batch %lld, %s, %s, %d threads, %lld iteration(s), libtorch %s, "
              "attention backward: %s\n",
              (long long)res, (long long)res, (long long)batch, dev.str().c_str(),
              tinv::dtype_name(dtype).c_str(), torch::get_num_threads(),
              (long long)iters, TORCH_VERSION, TORCH_VERSION_MAJOR >= 2 ? "fused (SDPA)" : backward.c_str());
  double t0 = now();
  auto sd = tinv::random_stable_diffusion(tinv::UNetConfig::sd15(), tinv::VaeConfig::sd15(),
                                          tinv::ClipTextConfig::sd15(), 0);
  sd.tokenizer = tinv::ClipTokenizer::load(tokenizer_dir);  // the CLIP vocabulary
  sd.text_encoder->to(dev, dtype);
  sd.unet->to(dev, dtype);
  sd.vae->to(dev, dtype);
  sd.device = dev;
  sd.dtype = sd.vae_dtype = dtype;
  sync();
  std::printf("load %.1f s, rss %.2f GB\n", now() - t0, tinv::current_rss_bytes() / 1e9);
  const int64_t h = res / 8, n = 4, d = 768;
  const auto on = torch::TensorOptions().device(dev);
  auto image = (torch::rand({batch, 3, res, res}, on) * 2 - 1).to(dtype);
  auto ids = torch::full({batch, 77}, 49407, on.dtype(torch::kInt64));
  for (int64_t i = 0; i < n; ++i) ids.select(1, 1 + i).fill_(49408 + i);
  ids.select(1, 0).fill_(49406);
  auto rows0 = sd.text_encoder->token_embeddings(torch::tensor({320, 1125, 539, 1929}, torch::kInt64).to(dev));
  tinv::NoiseSchedule sched(sd.scheduler);

  std::stringstream ss(modes);
  for (std::string mode; std::getline(ss, mode, ',');) {
    double total = 0;
    for (int64_t it = 0; it < iters; ++it) {
      auto t = torch::randint(0, 1000, {batch}, on.dtype(torch::kInt64));
      auto noise = torch::randn({batch, 4, h, h}, on);
      auto latents = torch::randn({batch, 4, h, h}, on);
      sync();
      double s = now();
      if (mode == "parts") {
        auto rows = rows0.clone().requires_grad_(true);
        auto states = sd.text_encoder->forward(ids, rows);
        auto st = states.detach().requires_grad_(true);
        auto out = sd.unet->forward(sched.add_noise(latents, noise, t).to(dtype), t, st);
        torch::mse_loss(out.to(torch::kFloat32), noise).backward();
        states.backward(st.grad());
      } else if (mode == "step") {
        static std::unique_ptr<tinv::InversionTrainer> tr;
        if (!tr) {
          tinv::TrainerOptions opt;
          opt.schedule = tinv::LrSchedule::make(tinv::LrScheduleKind::kConstant, 5e-3, 1000);
          tr = std::make_unique<tinv::InversionTrainer>(*sd.tokenizer, sd.text_encoder, sd.unet,
                                                        sd.scheduler, std::vector<std::string>{"<a_0>", "<a_1>", "<a_2>", "<a_3>"},
                                                        rows0, std::vector<std::string>{"{}"}, opt);
          sync();
          s = now();
        }
        tr->step({std::vector<int64_t>(batch, 0), t, noise, latents});
      } else if (mode == "naive") {
        for (auto& p : sd.unet->parameters()) p.set_requires_grad(true);
        for (auto& p : sd.text_encoder->parameters()) p.set_requires_grad(true);
        for (auto& p : sd.vae->parameters()) p.set_requires_grad(true);
        auto rows = rows0.clone().requires_grad_(true);
        auto lat = sd.vae->encode(image).mean * 0.18215;  // no cache: encode every step
        auto states = sd.text_encoder->forward(ids, rows);
        auto out = sd.unet->forward(sched.add_noise(lat.to(torch::kFloat32), noise, t).to(dtype), t, states);
        torch::mse_loss(out.to(torch::kFloat32), noise).backward();
        for (auto& p : sd.unet->parameters()) p.mutable_grad() = torch::Tensor();
        for (auto& p : sd.text_encoder->parameters()) p.mutable_grad() = torch::Tensor();
        for (auto& p : sd.vae->parameters()) p.mutable_grad() = torch::Tensor();
      } else {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
      }
      sync();
      total += now() - s;
    }
    std::printf("%-6s %.2f s/step   peak rss so far %.2f GB\n", mode.c_str(), total / iters,
                tinv::peak_rss_bytes() / 1e9);
    std::fflush(stdout);
  }
  return 0;
}
