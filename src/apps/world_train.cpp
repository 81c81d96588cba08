// Training and export of the embedded world models (see train.h).
#include "apps/world_train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "inversion/lr_schedule.h"
#include "inversion/optimizer.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "pipelines/caption.h"
#include "schedulers/noise_schedule.h"
#include "text/clip_tokenizer.h"
#include "text/wordpiece_tokenizer.h"
#include "world/bpe_trainer.h"
#include "world/world.h"

namespace tinv::world {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr int kImageSize = 64;
constexpr const char* kPrompt = "a picture of";  // BLIP's captioning prompt, kept for the world
constexpr int64_t kBlipMaxPositions = 48;
// Token positions of the text encoder: the longest world caption is 25 tokens with BOS/EOS.
constexpr int64_t kTextLength = 32;

// ---- configs -----------------------------------------------------------------------------

json vae_json(const VaeConfig& c) {
  return {{"_class_name", "AutoencoderKL"},
          {"_diffusers_version", "0.25.0"},
          {"act_fn", c.act_fn},
          {"block_out_channels", c.block_out_channels},
          {"down_block_types", c.down_block_types},
          {"force_upcast", c.force_upcast},
          {"in_channels", c.in_channels},
          {"latent_channels", c.latent_channels},
          {"layers_per_block", c.layers_per_block},
          {"norm_num_groups", c.norm_num_groups},
          {"out_channels", c.out_channels},
          {"sample_size", c.sample_size},
          {"scaling_factor", c.scaling_factor},
          {"up_block_types", c.up_block_types}};
}

json unet_json(const UNetConfig& c) {
  // diffusers reads the head COUNT from `attention_head_dim` (its historical naming).
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.25.0"},
          {"act_fn", c.act_fn},
          {"attention_head_dim", c.num_attention_heads},
          {"block_out_channels", c.block_out_channels},
          {"center_input_sample", false},
          {"cross_attention_dim", c.cross_attention_dim},
          {"down_block_types", c.down_block_types},
          {"downsample_padding", c.downsample_padding},
          {"flip_sin_to_cos", c.flip_sin_to_cos},
          {"freq_shift", c.freq_shift},
          {"in_channels", c.in_channels},
          {"layers_per_block", c.layers_per_block},
          {"mid_block_scale_factor", c.mid_block_scale_factor},
          {"norm_eps", c.norm_eps},
          {"norm_num_groups", c.norm_num_groups},
          {"out_channels", c.out_channels},
          {"sample_size", c.sample_size},
          {"up_block_types", c.up_block_types},
          {"use_linear_projection", c.use_linear_projection},
          {"upcast_attention", c.upcast_attention}};
}

json text_json(const ClipTextConfig& c) {
  return {{"architectures", {"CLIPTextModel"}},
          {"model_type", "clip_text_model"},
          {"bos_token_id", c.bos_token_id},
          {"eos_token_id", c.eos_token_id},
          {"pad_token_id", c.pad_token_id},
          {"hidden_act", c.hidden_act},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"layer_norm_eps", c.layer_norm_eps},
          {"max_position_embeddings", c.max_position_embeddings},
          {"num_attention_heads", c.num_attention_heads},
          {"num_hidden_layers", c.num_hidden_layers},
          {"projection_dim", c.hidden_size},
          {"torch_dtype", "float16"},
          {"vocab_size", c.vocab_size}};
}

json scheduler_json(const SchedulerConfig& c) {
  return {{"_class_name", c.class_name},
          {"_diffusers_version", "0.25.0"},
          {"beta_end", c.beta_end},
          {"beta_schedule", c.beta_schedule},
          {"beta_start", c.beta_start},
          {"clip_sample", false},
          {"num_train_timesteps", c.num_train_timesteps},
          {"prediction_type", c.prediction_type},
          {"set_alpha_to_one", false},
          {"steps_offset", 1},
          {"timestep_spacing", "leading"}};
}

json blip_json(const BlipConfig& c) {
  const auto& v = c.vision;
  const auto& t = c.text;
  return {{"architectures", {"BlipForConditionalGeneration"}},
          {"model_type", "blip"},
          {"vision_config",
           {{"hidden_size", v.hidden_size},
            {"intermediate_size", v.intermediate_size},
            {"num_hidden_layers", v.num_hidden_layers},
            {"num_attention_heads", v.num_attention_heads},
            {"num_channels", v.num_channels},
            {"image_size", v.image_size},
            {"patch_size", v.patch_size},
            {"hidden_act", v.hidden_act},
            {"layer_norm_eps", v.layer_norm_eps},
            {"model_type", "blip_vision_model"}}},
          {"text_config",
           {{"vocab_size", t.vocab_size},
            {"hidden_size", t.hidden_size},
            {"encoder_hidden_size", t.encoder_hidden_size},
            {"intermediate_size", t.intermediate_size},
            {"num_hidden_layers", t.num_hidden_layers},
            {"num_attention_heads", t.num_attention_heads},
            {"max_position_embeddings", t.max_position_embeddings},
            {"hidden_act", t.hidden_act},
            {"layer_norm_eps", t.layer_norm_eps},
            {"bos_token_id", t.bos_token_id},
            {"sep_token_id", t.sep_token_id},
            {"pad_token_id", t.pad_token_id},
            {"model_type", "blip_text_model"}}}};
}

json preprocessor_json(const BlipPreprocessConfig& p) {
  return {{"do_normalize", p.do_normalize},
          {"do_rescale", p.do_rescale},
          {"do_resize", p.do_resize},
          {"image_mean", p.mean},
          {"image_std", p.std},
          {"image_processor_type", "BlipImageProcessor"},
          {"processor_class", "BlipProcessor"},
          {"resample", p.resample},
          {"rescale_factor", p.rescale_factor},
          {"size", {{"height", p.height}, {"width", p.width}}}};
}

BlipPreprocessConfig world_preprocess() {
  BlipPreprocessConfig p;
  p.width = p.height = kImageSize;
  p.mean = {0.5, 0.5, 0.5};
  p.std = {0.5, 0.5, 0.5};
  return p;
}

void write_json(const std::string& path, const json& j) {
  std::string text = j.dump(2) + "\n";
  write_file_atomically(path, text.data(), text.size());
}

torch::Tensor sincos_positions(int64_t grid, int64_t dim);

// ---- data --------------------------------------------------------------------------------

enum Stream : uint64_t { kVaeStream = 11, kDiffusionStream = 12, kCaptionerStream = 13, kDecoderStream = 14 };

at::Generator step_generator(uint64_t seed, uint64_t stream, int64_t step) {
  Rng r = Rng::derive(seed, stream, static_cast<uint64_t>(step));
  return at::make_generator<at::CPUGeneratorImpl>(r.next_u64());
}

// Scene indices of a training batch: step k uses indices [k*B, (k+1)*B) of the train split, so
// the stream never repeats and depends on the step only.
std::vector<Sample> scene_batch(uint64_t seed, int64_t step, int64_t batch, const SceneRules& rules) {
  std::vector<Sample> out;
  out.reserve(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i)
    out.push_back(sample_at(seed, Split::kTrain, static_cast<uint64_t>(step * batch + i), kImageSize, rules));
  return out;
}

// Train scenes first .. first+count-1 as float [count, 3, 64, 64] in [-1, 1].
torch::Tensor scene_images(uint64_t seed, int64_t first, int64_t count, const SceneRules& rules) {
  std::vector<torch::Tensor> xs;
  for (int64_t i = first; i < first + count; ++i)
    xs.push_back(
        image_to_signed_tensor(sample_at(seed, Split::kTrain, static_cast<uint64_t>(i), kImageSize, rules).image));
  return torch::stack(xs);
}

// ---- optimisation ------------------------------------------------------------------------

// AdamW (inversion/optimizer.h, one per tensor) over named parameters: beta2 0.99, weight decay
// 0.01 on weights only (none on biases and norms), the global gradient norm clipped.
struct ParamOptimizer {
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::vector<AdamW> adam;  // adam[i] updates params[i]

  explicit ParamOptimizer(std::vector<std::pair<std::string, torch::Tensor>> p) : params(std::move(p)) {
    for (auto& [n, t] : params) {
      AdamWOptions o;
      o.beta2 = 0.99;
      o.weight_decay = t.dim() >= 2 ? 0.01 : 0.0;
      adam.emplace_back(t, o);
    }
  }

  // Clips the global gradient norm to max_norm, updates every parameter that has a gradient
  // and zeroes the gradients; returns the norm before clipping.
  double update(double lr, double max_norm) {
    torch::NoGradGuard ng;
    double sq = 0;
    for (auto& [n, p] : params)
      if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
    const double norm = std::sqrt(sq);
    const double scale = (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6) : 1.0;
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i].second;
      if (!p.grad().defined()) continue;
      adam[i].step(p.grad() * scale, lr);
      p.mutable_grad().zero_();
    }
    return norm;
  }
};

// Linear warm-up over 10% of the steps (at most 200), then cosine decay to 10% of the peak.
LrSchedule world_schedule(double peak, int64_t total) {
  LrSchedule s =
      LrSchedule::make(LrScheduleKind::kCosine, peak, total, std::max<int64_t>(1, std::min<int64_t>(200, total / 10)));
  s.final_ratio = 0.1;
  return s;
}

std::vector<std::pair<std::string, torch::Tensor>> trainable(torch::nn::Module& m, const std::string& prefix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& item : m.named_parameters(true)) {
    item.value().set_requires_grad(true);
    out.emplace_back(prefix + item.key(), item.value());
  }
  return out;
}

std::string ckpt_path(const std::string& work, const std::string& part) {
  return join_path(work, part + ".ckpt.safetensors");
}

constexpr const char* kNotWorldCheckpoint = "not a tinv world training checkpoint (no step/config metadata)";

// Tensors p.<name> (parameter), m.<name> and v.<name> (AdamW's moments); metadata step and config.
void save_world_checkpoint(const std::string& path, const ParamOptimizer& opt, int64_t step, const json& meta) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (size_t i = 0; i < opt.params.size(); ++i) {
    const auto& [n, p] = opt.params[i];
    tensors.emplace_back("p." + n, p);
    tensors.emplace_back("m." + n, opt.adam[i].exp_avg());
    tensors.emplace_back("v." + n, opt.adam[i].exp_avg_sq());
  }
  save_checkpoint(path, step, tensors, {{"config", meta.dump()}});
}

// Restores parameters and moments; returns the step the checkpoint was taken after.
int64_t load_world_checkpoint(const std::string& path, ParamOptimizer& opt, const json& meta) {
  Checkpoint ck = open_checkpoint(path, kNotWorldCheckpoint);
  auto it = ck.metadata().find("config");
  TINV_CHECK(it != ck.metadata().end(), path, kNotWorldCheckpoint);
  TINV_CHECK(json::parse(it->second) == meta, path,
             "was trained with another configuration (sizes, batch or seed differ); use another --work folder");
  for (size_t i = 0; i < opt.params.size(); ++i) {
    auto& [n, p] = opt.params[i];
    torch::Tensor m = torch::empty_like(p), v = torch::empty_like(p);
    restore_tensor(ck, "p." + n, p);
    restore_tensor(ck, "m." + n, m);
    restore_tensor(ck, "v." + n, v);
    opt.adam[i].load_state(m, v, ck.step);
  }
  return ck.step;
}

// Parameters of a checkpoint under `prefix` (the "p." entries), prefix removed.
StateDict checkpoint_weights(const std::string& path, const std::string& prefix) {
  SafeTensors f = SafeTensors::open(path);
  StateDict out;
  const std::string full = "p." + prefix;
  for (const auto& k : f.keys())
    if (k.rfind(full, 0) == 0) out[k.substr(full.size())] = f.get(k);
  TINV_CHECK(!out.empty(), path, "has no '", prefix, "' weights");
  return out;
}

// ---- the shared loop ---------------------------------------------------------------------

struct PartLoop {
  std::string name;
  int64_t steps, batch;
  double lr;
  const TrainOptions* opt;
  json meta;
  std::function<torch::Tensor(int64_t step)> loss;  // scalar, graph to the parameters
};

// The CSV log without the rows after step `start` (consistent with the checkpoint resumed).
std::string log_up_to(const std::string& log, int64_t start) {
  std::string kept;
  size_t pos = 0;
  while (pos < log.size()) {
    size_t nl = log.find('\n', pos);
    std::string line = log.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos + 1);
    pos = nl == std::string::npos ? log.size() : nl + 1;
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0])) && std::stoll(line) > start) continue;
    kept += line;
  }
  return kept;
}

void run_loop(ParamOptimizer& opt, const PartLoop& p) {
  const std::string ckpt = ckpt_path(p.opt->work.string(), p.name);
  json meta = p.meta;  // the configuration a resumed checkpoint must match
  if (p.opt->rules.unnamed_dot > 0) meta["unnamed_dot"] = p.opt->rules.unnamed_dot;  // v2 checkpoints: absent
  int64_t start = 0;
  if (file_exists(ckpt)) {
    start = load_world_checkpoint(ckpt, opt, meta);
    std::fprintf(stderr, "%s: resuming from %s at step %lld\n", p.name.c_str(), ckpt.c_str(),
                 static_cast<long long>(start));
  }
  if (start >= p.steps) {
    std::fprintf(stderr, "%s: already trained for %lld steps (>= --steps %lld)\n", p.name.c_str(),
                 static_cast<long long>(start), static_cast<long long>(p.steps));
    return;
  }
  const std::string log_path = join_path(p.opt->work.string(), p.name + ".log.csv");
  std::string log =
      log_up_to(file_exists(log_path) ? read_text_file(log_path) : "step,loss,lr,grad_norm,seconds\n", start);
  const int64_t end = p.opt->stop_at > 0 ? std::min(p.opt->stop_at, p.steps) : p.steps;
  Progress progress(p.name, end, p.opt->progress);
  progress.start_at(start);
  const auto t0 = Clock::now();
  double ema = -1;
  const LrSchedule schedule = world_schedule(p.lr, p.steps);
  for (int64_t k = start; k < end; ++k) {
    const double lr = schedule.at(k);
    torch::Tensor loss = p.loss(k);
    const double value = loss.item<double>();
    TINV_CHECK(std::isfinite(value), p.name, "loss is not finite at step ", k + 1,
               "; the last checkpoint is kept: lower --lr and resume");
    loss.backward();
    const double norm = opt.update(lr, 1.0);
    ema = ema < 0 ? value : 0.98 * ema + 0.02 * value;
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    char row[160];
    std::snprintf(row, sizeof(row), "%lld,%.6g,%.6g,%.4g,%.2f\n", static_cast<long long>(k + 1), value, lr, norm, secs);
    log += row;
    char suffix[64];
    std::snprintf(suffix, sizeof(suffix), "loss=%.4f", ema);
    progress.update(k + 1, suffix);
    if ((k + 1) % p.opt->save_every == 0 || k + 1 == end) {
      save_world_checkpoint(ckpt, opt, k + 1, meta);
      write_file_atomically(log_path, log.data(), log.size());
    }
  }
  progress.finish();
}

// ---- parts -------------------------------------------------------------------------------

ClipTokenizer ensure_tokenizer(const std::string& work) {
  const std::string dir = join_path(work, "tokenizer");
  if (!file_exists(join_path(dir, "vocab.json"))) {
    std::vector<std::string> texts;
    for (uint64_t i = 0; i < 20000; ++i) texts.push_back(caption(scene_at(0, Split::kTrain, i)));
    BpeTrainOptions o;
    o.num_merges = 1000;
    o.model_max_length = kTextLength;
    save_bpe(train_bpe(texts, o), dir);
  }
  return ClipTokenizer::load(dir);
}

WordPieceTokenizer ensure_blip_vocab(const std::string& work) {
  const std::string path = join_path(work, "blip-vocab.txt");
  if (!file_exists(path)) {
    std::string text = blip_vocab_text();
    write_file_atomically(path, text.data(), text.size());
  }
  return WordPieceTokenizer::load(path);
}

void train_vae(const TrainOptions& o, torch::Device dev) {
  WorldConfigs cfg = world_configs(1, 1);
  const int64_t batch = o.batch > 0 ? o.batch : 16;
  const double lr = o.lr > 0 ? o.lr : 1e-3;
  torch::manual_seed(o.seed);
  AutoencoderKL vae(cfg.vae);
  {
    // Start with a small posterior std (logvar -6): the decoder then learns from nearly clean
    // latents at once instead of from unit noise; the KL term may raise it again.
    torch::NoGradGuard ng;
    for (auto& item : vae->named_parameters(true))
      if (item.key() == "quant_conv.bias")
        item.value().narrow(0, cfg.vae.latent_channels, cfg.vae.latent_channels).fill_(-6.0);
  }
  vae->to(dev);
  vae->train();
  ParamOptimizer opt(trainable(*vae, ""));
  json meta = {{"part", "vae"}, {"vae", vae_json(cfg.vae)}, {"batch", batch}, {"seed", o.seed}};
  PartLoop loop{"vae", o.steps, batch, lr, &o, meta, {}};
  loop.loss = [&](int64_t k) {
    auto x = scene_images(o.seed, k * batch, batch, o.rules).to(dev);  // [B, 3, 64, 64] in [-1, 1]
    auto gen = step_generator(o.seed, kVaeStream, k);
    Posterior post = vae->encode(x);
    auto eps = torch::randn(post.mean.sizes(), gen).to(dev);
    auto z = post.mean + post.std() * eps;  // reparameterised sample
    auto rec = vae->decode(z);
    auto diff = rec - x;
    auto kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).mean();
    return diff.abs().mean() + diff.pow(2).mean() + 1e-5 * kl;
  };
  run_loop(opt, loop);
}

AutoencoderKL trained_vae(const std::string& work, const VaeConfig& cfg);

// Fine-tunes the decoder (and post_quant_conv) of the trained VAE with its encoder frozen, so the
// latent space (and the diffusion training set) stays the same: Stable Diffusion's ft-MSE
// decoders were made the same way.
void train_decoder(const TrainOptions& o, torch::Device dev) {
  WorldConfigs cfg = world_configs(1, 1);
  const int64_t batch = o.batch > 0 ? o.batch : 16;
  const double lr = o.lr > 0 ? o.lr : 5e-4;
  AutoencoderKL vae = trained_vae(o.work.string(), cfg.vae);
  const std::string vae_step = SafeTensors::open(ckpt_path(o.work.string(), "vae")).metadata().at("step");
  vae->to(dev);
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& p : trainable(*vae, ""))
    if (p.first.rfind("decoder.", 0) == 0 || p.first.rfind("post_quant_conv.", 0) == 0)
      params.push_back(p);
    else
      p.second.set_requires_grad(false);
  ParamOptimizer opt(params);
  json meta = {
      {"part", "decoder"}, {"vae", vae_json(cfg.vae)}, {"vae_step", vae_step}, {"batch", batch}, {"seed", o.seed}};
  PartLoop loop{"decoder", o.steps, batch, lr, &o, meta, {}};
  loop.loss = [&](int64_t k) {
    auto x = scene_images(o.seed + 2, k * batch, batch, o.rules).to(dev);
    auto gen = step_generator(o.seed, kDecoderStream, k);
    torch::Tensor z;
    {
      torch::NoGradGuard ng;
      Posterior post = vae->encode(x);
      z = post.mean + post.std() * torch::randn(post.mean.sizes(), gen).to(dev);
    }
    auto diff = vae->decode(z) - x;
    return diff.abs().mean() + diff.pow(2).mean();
  };
  run_loop(opt, loop);
}

AutoencoderKL trained_vae(const std::string& work, const VaeConfig& cfg) {
  const std::string ckpt = ckpt_path(work, "vae");
  TINV_CHECK(file_exists(ckpt), ckpt, "no trained VAE: run `tinv world train vae` first");
  AutoencoderKL vae(cfg);
  load_state_dict(*vae, checkpoint_weights(ckpt, ""), ckpt);
  vae->eval();
  freeze(*vae);
  return vae;
}

// The latent cache's metadata (count, vae_step, seed, unnamed_dot, scaling_factor) as JSON
// beside it: the cache is large and git-ignored, the export needs only its scaling factor.
constexpr const char* kLatentsInfo = "latents.json";

// Encodes the first `count` train scenes with the trained VAE (posterior means): the diffusion
// training set, cached in latents.safetensors with the latents' scaling factor (1 / std).
std::pair<torch::Tensor, double> latent_dataset(const TrainOptions& o, const VaeConfig& cfg, torch::Device dev) {
  const std::string path = join_path(o.work.string(), "latents.safetensors");
  const std::string vae_ckpt = ckpt_path(o.work.string(), "vae");
  TINV_CHECK(file_exists(vae_ckpt), vae_ckpt, "no trained VAE: run `tinv world train vae` first");
  const std::string vae_step = SafeTensors::open(vae_ckpt).metadata().at("step");
  if (file_exists(path)) {
    SafeTensors f = SafeTensors::open(path);
    auto md = f.metadata();
    const double dots = md.count("unnamed_dot") ? std::stod(md.at("unnamed_dot")) : 0.0;
    if (md.count("count") && std::stoll(md.at("count")) == o.dataset && md.at("vae_step") == vae_step &&
        std::stoull(md.at("seed")) == o.seed && dots == o.rules.unnamed_dot)
      return {f.get("latents"), std::stod(md.at("scaling_factor"))};
  }
  AutoencoderKL vae = trained_vae(o.work.string(), cfg);
  vae->to(dev);
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> parts;
  const int64_t chunk = 64;
  Progress progress("encode", o.dataset, o.progress);
  for (int64_t i = 0; i < o.dataset; i += chunk) {
    const int64_t n = std::min(chunk, o.dataset - i);
    parts.push_back(vae->encode(scene_images(o.seed, i, n, o.rules).to(dev)).mean.cpu());
    progress.update(std::min(o.dataset, i + chunk));
  }
  progress.finish();
  auto latents = torch::cat(parts);
  const double scale = 1.0 / latents.std().item<double>();
  const std::map<std::string, std::string> md = {{"count", std::to_string(o.dataset)},
                                                 {"vae_step", vae_step},
                                                 {"seed", std::to_string(o.seed)},
                                                 {"unnamed_dot", format_number(o.rules.unnamed_dot)},
                                                 {"scaling_factor", std::to_string(scale)}};
  save_safetensors(path, {{"latents", latents}}, md);
  write_json(join_path(o.work.string(), kLatentsInfo), md);  // small, committed: export needs no cache
  return {latents, std::stod(std::to_string(scale))};
}

void train_diffusion(const TrainOptions& o, torch::Device dev) {
  ClipTokenizer tok = ensure_tokenizer(o.work.string());
  WorldConfigs cfg = world_configs(tok.base_vocab_size(), 1);
  const int64_t batch = o.batch > 0 ? o.batch : 64;
  const double lr = o.lr > 0 ? o.lr : 5e-4;
  TINV_CHECK(o.dataset >= batch, "--dataset", "must be at least the batch size ", batch);
  auto [latents, scale] = latent_dataset(o, cfg.vae, dev);
  latents = latents.mul(scale);  // [N, 4, 16, 16], unit variance
  // Caption ids of every training scene, and of the empty prompt (classifier-free dropout).
  std::vector<int64_t> all_ids;
  for (int64_t i = 0; i < o.dataset; ++i) {
    auto enc = tok.encode(caption(scene_at(o.seed, Split::kTrain, static_cast<uint64_t>(i), o.rules)));
    all_ids.insert(all_ids.end(), enc.ids.begin(), enc.ids.end());
  }
  const int64_t len = static_cast<int64_t>(all_ids.size()) / o.dataset;
  auto ids = torch::tensor(all_ids, torch::kLong).reshape({o.dataset, len});
  auto empty = torch::tensor(tok.encode("").ids, torch::kLong).reshape({1, len});
  torch::manual_seed(o.seed);
  ClipTextModel text(cfg.text);
  UNet2DConditionModel unet(cfg.unet);
  {
    torch::NoGradGuard ng;  // CLIP's initialisation of the embedding tables (std 0.02)
    for (auto& item : text->named_parameters(true))
      if (item.key().find("embedding") != std::string::npos) item.value().normal_(0, 0.02);
  }
  if (!o.init.empty() && !file_exists(ckpt_path(o.work.string(), "diffusion"))) {
    // A new schedule (fresh optimiser moments, step 0) from another run's weights, e.g. an
    // epsilon-prediction run continued with v-prediction.
    load_state_dict(*text, checkpoint_weights(o.init.string(), "text_encoder."), o.init.string());
    load_state_dict(*unet, checkpoint_weights(o.init.string(), "unet."), o.init.string());
    std::fprintf(stderr, "diffusion: starting from the weights of %s\n", o.init.c_str());
  }
  text->to(dev);
  unet->to(dev);
  text->train();
  unet->train();
  auto params = trainable(*text, "text_encoder.");
  for (auto& p : trainable(*unet, "unet.")) params.push_back(p);
  ParamOptimizer opt(params);
  NoiseSchedule schedule(cfg.scheduler);
  json meta = {
      {"part", "diffusion"}, {"unet", unet_json(cfg.unet)}, {"text", text_json(cfg.text)},          {"batch", batch},
      {"seed", o.seed},      {"dataset", o.dataset},        {"prediction", to_string(o.prediction)}};
  PartLoop loop{"diffusion", o.steps, batch, lr, &o, meta, {}};
  loop.loss = [&, latents = latents, ids = ids, empty = empty](int64_t k) {
    auto gen = step_generator(o.seed, kDiffusionStream, k);
    auto index = torch::randint(o.dataset, {batch}, gen, torch::kLong);
    auto drop = torch::rand({batch}, gen) < 0.1;  // 10% unconditional
    auto t = torch::randint(cfg.scheduler.num_train_timesteps, {batch}, gen, torch::kLong);
    auto x0 = latents.index_select(0, index);
    auto noise = torch::randn(x0.sizes(), gen);
    auto batch_ids = torch::where(drop.unsqueeze(1), empty.expand({batch, ids.size(1)}), ids.index_select(0, index));
    auto noisy = schedule.add_noise(x0, noise, t);
    auto states = text->forward(batch_ids.to(dev));
    auto pred = unet->forward(noisy.to(dev), t.to(dev), states);
    return torch::mse_loss(pred, schedule.target(x0, noise, t, to_string(o.prediction)).to(dev));
  };
  run_loop(opt, loop);
}

void train_captioner(const TrainOptions& o, torch::Device dev) {
  WordPieceTokenizer tok = ensure_blip_vocab(o.work.string());
  WorldConfigs cfg = world_configs(1, tok.vocab_size());
  const int64_t batch = o.batch > 0 ? o.batch : 48;
  const double lr = o.lr > 0 ? o.lr : 1e-3;
  const BlipPreprocessConfig pre = world_preprocess();
  const std::vector<int64_t> prompt = tok.encode(kPrompt, false);
  const int64_t dec = cfg.blip.text.bos_token_id, sep = tok.sep_id(), pad = tok.pad_id();
  const int64_t prefix = 1 + static_cast<int64_t>(prompt.size());  // [DEC] + prompt: not scored
  torch::manual_seed(o.seed);
  BlipForConditionalGeneration model(cfg.blip);
  {
    // 2-D sine-cosine patch positions (as MAE) instead of small random ones: the decoder can
    // read where things are from the first step; the embedding stays trainable.
    torch::NoGradGuard ng;
    auto& pos = model->vision_model->embeddings->position_embedding;  // [1, 1+P, D]
    pos.copy_(sincos_positions(cfg.blip.vision.image_size / cfg.blip.vision.patch_size, cfg.blip.vision.hidden_size)
                  .unsqueeze(0));
  }
  if (!o.init.empty() && !file_exists(ckpt_path(o.work.string(), "captioner"))) {
    load_state_dict(*model, checkpoint_weights(o.init.string(), ""), o.init.string());
    std::fprintf(stderr, "captioner: starting from the weights of %s\n", o.init.c_str());
  }
  model->to(dev);
  model->train();
  ParamOptimizer opt(trainable(*model, ""));
  json meta = {{"part", "captioner"}, {"blip", blip_json(cfg.blip)}, {"batch", batch}, {"seed", o.seed}};
  PartLoop loop{"captioner", o.steps, batch, lr, &o, meta, {}};
  loop.loss = [&](int64_t k) {
    std::vector<torch::Tensor> pixels;
    std::vector<std::vector<int64_t>> seqs;
    size_t longest = 0;
    for (const Sample& s : scene_batch(o.seed + 1, k, batch, o.rules)) {
      pixels.push_back(blip_preprocess(s.image, pre));
      std::vector<int64_t> seq = {dec};
      seq.insert(seq.end(), prompt.begin(), prompt.end());
      for (int64_t id : tok.encode(s.caption, false)) seq.push_back(id);
      seq.push_back(sep);
      longest = std::max(longest, seq.size());
      seqs.push_back(std::move(seq));
    }
    TINV_CHECK(static_cast<int64_t>(longest) <= kBlipMaxPositions, "captioner",
               "caption longer than the model's positions");
    std::vector<int64_t> flat(static_cast<size_t>(batch) * longest, pad);
    for (size_t i = 0; i < seqs.size(); ++i) std::copy(seqs[i].begin(), seqs[i].end(), flat.begin() + i * longest);
    auto ids = torch::tensor(flat, torch::kLong).reshape({batch, static_cast<int64_t>(longest)});
    auto targets = ids.narrow(1, 1, ids.size(1) - 1).clone();  // next token
    targets.narrow(1, 0, prefix - 1).fill_(-100);              // the prompt is given
    targets.masked_fill_(targets == pad, -100);
    auto embeds = model->vision_model->forward(torch::cat(pixels).to(dev));
    auto hidden = model->text_decoder->forward(ids.narrow(1, 0, ids.size(1) - 1).to(dev), embeds);
    auto logits = model->text_decoder->logits(hidden);  // [B, N-1, V]
    return torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}).to(dev),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).label_smoothing(0.1));
  };
  run_loop(opt, loop);
}

// [1 + G*G, D]: row 0 (the class token) zero; patch (r, c) gets sin/cos of r in the first half
// of the features and of c in the second, at frequencies 1 / 10000^(2i/(D/2)).
torch::Tensor sincos_positions(int64_t grid, int64_t dim) {
  const int64_t half = dim / 2, quarter = half / 2;
  auto out = torch::zeros({1 + grid * grid, dim});
  auto omega = torch::pow(10000.0, -torch::arange(quarter, torch::kFloat64) / static_cast<double>(quarter));
  for (int64_t r = 0; r < grid; ++r)
    for (int64_t c = 0; c < grid; ++c) {
      auto row = out[1 + r * grid + c];
      for (auto [coord, offset] : {std::pair<int64_t, int64_t>{r, 0}, {c, half}}) {
        auto a = (omega * static_cast<double>(coord)).to(torch::kFloat32);
        row.narrow(0, offset, quarter).copy_(a.sin());
        row.narrow(0, offset + quarter, quarter).copy_(a.cos());
      }
    }
  return out;
}

// fp16 copies of the checkpoint's weights under `prefix`, prefix removed.
std::vector<std::pair<std::string, torch::Tensor>> half_weights(const std::string& ckpt, const std::string& prefix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [k, t] : checkpoint_weights(ckpt, prefix)) out.emplace_back(k, t.to(torch::kHalf));
  return out;
}

void copy_file(const std::string& from, const std::string& to) {
  std::string text = read_text_file(from);
  write_file_atomically(to, text.data(), text.size());
}

}  // namespace

std::string blip_vocab_text() {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "picture", "of"};
  std::set<std::string> seen(tokens.begin(), tokens.end());
  for (const std::string& w : caption_words())
    if (seen.insert(w).second) tokens.push_back(w);
  for (char c = 'a'; c <= 'z'; ++c)
    if (seen.insert(std::string(1, c)).second) tokens.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) tokens.push_back(std::string("##") + c);
  for (const char* p : {".", "-", "'", "<", ">", "_"})
    if (seen.insert(p).second) tokens.push_back(p);
  std::string text;
  for (const auto& t : tokens) text += t + "\n";
  return text;
}

WorldConfigs world_configs(int64_t clip_vocab, int64_t blip_vocab) {
  WorldConfigs c;
  // VAE: 64x64 RGB <-> 4 x 16 x 16 (downscale 4).
  c.vae.block_out_channels = {32, 32, 64};
  c.vae.down_block_types = std::vector<std::string>(3, "DownEncoderBlock2D");
  c.vae.up_block_types = std::vector<std::string>(3, "UpDecoderBlock2D");
  c.vae.layers_per_block = 1;
  c.vae.norm_num_groups = 16;
  c.vae.sample_size = kImageSize;
  c.vae.force_upcast = false;
  // Text encoder: CLIP architecture over the world BPE.
  c.text.vocab_size = clip_vocab;
  c.text.hidden_size = 128;
  c.text.intermediate_size = 512;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.max_position_embeddings = kTextLength;
  c.text.bos_token_id = clip_vocab - 2;
  c.text.eos_token_id = clip_vocab - 1;
  c.text.pad_token_id = clip_vocab - 1;
  // Denoiser on 16x16 latents: three levels (16, 8, 4), cross-attention on the first two.
  c.unet.block_out_channels = {32, 64, 64};
  c.unet.layers_per_block = {1, 1, 1};
  c.unet.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
  c.unet.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  c.unet.num_attention_heads = {2, 4, 4};
  c.unet.transformer_layers_per_block = {1, 1, 1};
  c.unet.cross_attention_dim = 128;
  c.unet.norm_num_groups = 16;
  c.unet.sample_size = kImageSize / 4;
  c.scheduler.class_name = "DDIMScheduler";
  // Captioner: ViT on 8x8 patches, BERT decoder with cross-attention.
  auto& v = c.blip.vision;
  v.hidden_size = 128;
  v.intermediate_size = 512;
  v.num_hidden_layers = 4;
  v.num_attention_heads = 4;
  v.image_size = kImageSize;
  v.patch_size = 8;
  auto& t = c.blip.text;
  t.vocab_size = blip_vocab + 2;  // + [DEC] + [ENC]
  t.hidden_size = 128;
  t.encoder_hidden_size = 128;
  t.intermediate_size = 512;
  t.num_hidden_layers = 3;
  t.num_attention_heads = 4;
  t.max_position_embeddings = kBlipMaxPositions;
  t.bos_token_id = blip_vocab;
  t.sep_token_id = 3;
  t.pad_token_id = 0;
  return c;
}

std::string to_string(TrainPart part) {
  switch (part) {
    case TrainPart::kVae: return "vae";
    case TrainPart::kDecoder: return "decoder";
    case TrainPart::kDiffusion: return "diffusion";
    case TrainPart::kCaptioner: return "captioner";
  }
  throw Error("world train", str_cat("unknown part ", static_cast<int>(part)));
}

TrainPart parse_train_part(const std::string& name) {
  for (TrainPart p : {TrainPart::kVae, TrainPart::kDecoder, TrainPart::kDiffusion, TrainPart::kCaptioner})
    if (name == to_string(p)) return p;
  throw Error("world train", "unknown part '" + name + "' (vae, decoder, diffusion or captioner)");
}

std::string to_string(Prediction prediction) { return prediction == Prediction::kEpsilon ? "epsilon" : "v_prediction"; }

Prediction parse_prediction(const std::string& name) {
  if (name == "epsilon") return Prediction::kEpsilon;
  if (name == "v_prediction") return Prediction::kVPrediction;
  throw Error("--prediction", "must be epsilon or v_prediction, not '" + name + "'");
}

void train_part(const TrainOptions& o) {
  TINV_CHECK(o.steps >= 1, "--steps", "must be >= 1");
  TINV_CHECK(o.batch >= 0 && o.batch <= 4096, "--batch", "must be between 1 and 4096");
  TINV_CHECK(o.lr >= 0 && std::isfinite(o.lr), "--lr", "must be a positive number");
  TINV_CHECK(o.save_every >= 1, "--save-every", "must be >= 1");
  TINV_CHECK(o.stop_at >= 0, "--stop-at", "must be >= 0");
  TINV_CHECK(o.dataset >= 1, "--dataset", "must be >= 1");
  TINV_CHECK(!o.work.empty(), "--work", "is required");
  TINV_CHECK(o.init.empty() || o.part == TrainPart::kDiffusion || o.part == TrainPart::kCaptioner, "--init",
             "applies to the diffusion and captioner parts only");
  TINV_CHECK(o.rules.unnamed_dot >= 0 && o.rules.unnamed_dot <= 1, "--unnamed-dot", "must be in [0, 1], got ",
             o.rules.unnamed_dot);
  TINV_CHECK(o.init.empty() || file_exists(o.init.string()), o.init.string(), "no such checkpoint (--init)");
  make_dirs(o.work.string());
  torch::Device dev = resolve_device(o.device);
  if (o.part == TrainPart::kVae)
    train_vae(o, dev);
  else if (o.part == TrainPart::kDecoder)
    train_decoder(o, dev);
  else if (o.part == TrainPart::kDiffusion)
    train_diffusion(o, dev);
  else
    train_captioner(o, dev);
}

namespace {

const std::map<std::string, std::string> kExportMetadata = {{"format", "pt"}};

// The diffusers Stable Diffusion folder `sd` (fp16 weights) from the work folder's checkpoints.
void export_sd(const std::string& work, const std::string& sd, const WorldConfigs& cfg) {
  const auto& md = kExportMetadata;
  for (const char* d : {"", "scheduler", "tokenizer", "text_encoder", "unet", "vae"}) make_dirs(join_path(sd, d));
  write_json(join_path(sd, "model_index.json"), {{"_class_name", "StableDiffusionPipeline"},
                                                 {"_diffusers_version", "0.25.0"},
                                                 {"feature_extractor", {nullptr, nullptr}},
                                                 {"requires_safety_checker", false},
                                                 {"safety_checker", {nullptr, nullptr}},
                                                 {"scheduler", {"diffusers", "DDIMScheduler"}},
                                                 {"text_encoder", {"transformers", "CLIPTextModel"}},
                                                 {"tokenizer", {"transformers", "CLIPTokenizer"}},
                                                 {"unet", {"diffusers", "UNet2DConditionModel"}},
                                                 {"vae", {"diffusers", "AutoencoderKL"}}});
  write_json(join_path(sd, "scheduler/scheduler_config.json"), scheduler_json(cfg.scheduler));
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    copy_file(join_path(join_path(work, "tokenizer"), f), join_path(join_path(sd, "tokenizer"), f));
  write_json(join_path(sd, "text_encoder/config.json"), text_json(cfg.text));
  write_json(join_path(sd, "unet/config.json"), unet_json(cfg.unet));
  write_json(join_path(sd, "vae/config.json"), vae_json(cfg.vae));
  const std::string diff = ckpt_path(work, "diffusion");
  save_safetensors(join_path(sd, "text_encoder/model.safetensors"), half_weights(diff, "text_encoder."), md);
  save_safetensors(join_path(sd, "unet/diffusion_pytorch_model.safetensors"), half_weights(diff, "unet."), md);
  // The fine-tuned decoder (`world train decoder`), when there is one, replaces the VAE's.
  auto vae_weights = half_weights(ckpt_path(work, "vae"), "");
  if (file_exists(ckpt_path(work, "decoder"))) {
    std::map<std::string, torch::Tensor> dec;
    for (auto& [k, t] : half_weights(ckpt_path(work, "decoder"), "")) dec[k] = t;
    for (auto& [k, t] : vae_weights)
      if (dec.count(k)) t = dec.at(k);
  }
  save_safetensors(join_path(sd, "vae/diffusion_pytorch_model.safetensors"), vae_weights, md);
}

// The transformers BLIP folder `blip` (fp16 weights) from the captioner's checkpoint.
void export_blip(const std::string& work, const std::string& blip, const WorldConfigs& cfg) {
  const auto& md = kExportMetadata;
  make_dirs(blip);
  write_json(join_path(blip, "config.json"), blip_json(cfg.blip));
  write_json(join_path(blip, "preprocessor_config.json"), preprocessor_json(world_preprocess()));
  // The vocabulary names every id of the model, [DEC] (BLIP's bos_token_id) and [ENC] last, and
  // the tokenizer config marks them special: transformers' BlipProcessor then decodes our
  // captions exactly as tinv does (no [UNK] for the bos id).
  {
    std::string vocab = read_text_file(join_path(work, "blip-vocab.txt"));
    TINV_CHECK(!vocab.empty() && vocab.back() == '\n', join_path(work, "blip-vocab.txt"), "is empty or truncated");
    vocab += "[DEC]\n[ENC]\n";
    write_file_atomically(join_path(blip, "vocab.txt"), vocab.data(), vocab.size());
  }
  write_json(join_path(blip, "tokenizer_config.json"), {{"do_lower_case", true},
                                                        {"model_max_length", kBlipMaxPositions},
                                                        {"tokenizer_class", "BertTokenizer"},
                                                        {"processor_class", "BlipProcessor"},
                                                        {"bos_token", "[DEC]"},
                                                        {"additional_special_tokens", {"[ENC]"}}});
  write_json(join_path(blip, "special_tokens_map.json"), {{"bos_token", "[DEC]"},
                                                          {"cls_token", "[CLS]"},
                                                          {"sep_token", "[SEP]"},
                                                          {"pad_token", "[PAD]"},
                                                          {"unk_token", "[UNK]"},
                                                          {"mask_token", "[MASK]"},
                                                          {"additional_special_tokens", {"[ENC]"}}});
  save_safetensors(join_path(blip, "model.safetensors"), half_weights(ckpt_path(work, "captioner"), ""), md);
}

// The scaling factor of the latents the denoiser was trained on: latents.json, or the cache's
// metadata (work folders from before latents.json).
double latent_scaling_factor(const std::string& work) {
  const std::string info = join_path(work, kLatentsInfo), cache = join_path(work, "latents.safetensors");
  std::string text;
  if (file_exists(info)) {
    json j;
    try {
      j = json::parse(read_text_file(info));
      text = j.at("scaling_factor").get<std::string>();
    } catch (const json::exception& e) {
      throw Error(info, str_cat("not a latent cache description (", e.what(), ")"));
    }
  } else {
    TINV_CHECK(file_exists(cache), info,
               "missing (and no latents.safetensors): run `tinv world train diffusion` first");
    auto md = SafeTensors::open(cache).metadata();
    TINV_CHECK(md.count("scaling_factor"), cache, "no scaling_factor in its metadata");
    text = md.at("scaling_factor");
  }
  char* end = nullptr;
  const double scale = std::strtod(text.c_str(), &end);
  TINV_CHECK(end != text.c_str() && *end == '\0' && std::isfinite(scale) && scale > 0, info,
             "scaling_factor must be a positive number, got '", text, "'");
  return scale;
}

}  // namespace

void export_models(const std::string& work, const std::string& out) {
  for (const char* part : {"vae", "diffusion", "captioner"})
    TINV_CHECK(file_exists(ckpt_path(work, part)), ckpt_path(work, part),
               "missing: train every part (vae, diffusion, captioner) before exporting");
  ClipTokenizer tok = ClipTokenizer::load(join_path(work, "tokenizer"));
  WordPieceTokenizer wp = WordPieceTokenizer::load(join_path(work, "blip-vocab.txt"));
  WorldConfigs cfg = world_configs(tok.base_vocab_size(), wp.vocab_size());
  cfg.vae.scaling_factor = latent_scaling_factor(work);
  {  // the denoiser's target, as it was trained (checkpoints before --prediction are epsilon)
    auto meta = json::parse(SafeTensors::open(ckpt_path(work, "diffusion")).metadata().at("config"));
    cfg.scheduler.prediction_type = meta.value("prediction", std::string("epsilon"));
  }
  export_sd(work, join_path(out, "world-sd"), cfg);
  export_blip(work, join_path(out, "world-blip"), cfg);
}

}  // namespace tinv::world
