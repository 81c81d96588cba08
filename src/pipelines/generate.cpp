// Text-to-image generation (mirrors diffusers 0.25 StableDiffusionPipeline.__call__).
#include "pipelines/generate.h"

#include <torch/torch.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "io/embeddings.h"
#include "text/clip_tokenizer.h"
#include "text/sdxl_text.h"

namespace tinv {
namespace {

constexpr int64_t kMaxBatch = 64;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Shortest round-trip-ish text of a double: 7.5 -> "7.5", 7 -> "7".
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// 10 hex digits of FNV-1a over a trigger's float32 rows: identifies the embedding's content.
std::string rows_hash(const torch::Tensor& rows) {
  auto t = rows.to(torch::kCPU, torch::kFloat32).contiguous();
  const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < static_cast<size_t>(t.numel()) * 4; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf).substr(0, 10);
}

// `TI hashes: "a: 0123456789, b: ..."` for the triggers used by the prompts (A1111 style).
std::string ti_hashes(const StableDiffusion& sd, const ExtraTokens& extra, const GenerateOptions& o) {
  if (extra.empty() || !sd.tokenizer) return "";
  const std::string text = lower(o.prompt + "\n" + o.negative_prompt);
  const auto table = extra.table();
  const int64_t base = sd.tokenizer->base_vocab_size();
  std::string list;
  for (const auto& [trigger, tokens] : extra.triggers()) {
    if (text.find(lower(trigger)) == std::string::npos) continue;
    std::vector<torch::Tensor> rows;
    for (const auto& tok : tokens) rows.push_back(table[sd.tokenizer->added_token_id(tok) - base]);
    list += (list.empty() ? "" : ", ") + trigger + ": " + rows_hash(torch::stack(rows));
  }
  return list.empty() ? "" : ", TI hashes: \"" + list + "\"";
}

// A1111 `parameters` text for one image.
std::string parameters_text(const StableDiffusion& sd, const ExtraTokens& extra, const GenerateOptions& o,
                            const std::string& sampler, uint64_t seed, int64_t width, int64_t height) {
  std::string s = o.prompt + "\n";
  if (!o.negative_prompt.empty()) s += "Negative prompt: " + o.negative_prompt + "\n";
  s += "Steps: " + std::to_string(o.steps) + ", Sampler: " + a1111_sampler_name(sampler) +
       ", CFG scale: " + num(o.cfg) + ", Seed: " + std::to_string(seed) + ", Size: " + std::to_string(width) + "x" +
       std::to_string(height) + ", Model hash: " + sd.fingerprint + ", Model: " + file_stem(sd.source);
  if (sampler == "ddim" && o.eta > 0) s += ", Eta DDIM: " + num(o.eta);
  s += ti_hashes(sd, extra, o);
  s += ", Version: tinv 0.1.0";
  return s;
}

// [1, L, D] or [B, L, D] -> [B, L, D].
torch::Tensor to_batch(const torch::Tensor& states, int64_t b, const char* what) {
  TINV_CHECK(states.dim() == 3 && (states.size(0) == 1 || states.size(0) == b), "denoise", what, " must be [1 or ", b,
             ", L, D], got ", states.sizes());
  return states.size(0) == b ? states : states.expand({b, states.size(1), states.size(2)});
}

}  // namespace

void validate(const GenerateOptions& o) {
  if (o.sampler != "default") {
    std::string known;
    bool found = false;
    for (const auto& n : sampler_names()) {
      found = found || n == o.sampler;
      known += (known.empty() ? "" : ", ") + n;
    }
    TINV_CHECK(found, "--sampler", "unknown sampler '", o.sampler, "' (known: ", known, ", default)");
  }
  TINV_CHECK(o.steps >= 1 && o.steps <= 1000, "--steps", "must be between 1 and 1000, got ", o.steps);
  TINV_CHECK(std::isfinite(o.cfg) && o.cfg >= 0, "--cfg", "must be a finite number >= 0, got ", o.cfg);
  TINV_CHECK(std::isfinite(o.eta) && o.eta >= 0, "--eta", "must be a finite number >= 0, got ", o.eta);
  TINV_CHECK(o.width >= 0 && o.width % 8 == 0, "--width", "must be a positive multiple of 8, got ", o.width);
  TINV_CHECK(o.height >= 0 && o.height % 8 == 0, "--height", "must be a positive multiple of 8, got ", o.height);
  TINV_CHECK(o.batch >= 1 && o.batch <= kMaxBatch, "--batch", "must be between 1 and ", kMaxBatch, ", got ", o.batch);
  const std::pair<const char*, int64_t> sizes[] = {{"--original-width", o.original_width},
                                                   {"--original-height", o.original_height},
                                                   {"--target-width", o.target_width},
                                                   {"--target-height", o.target_height}};
  for (const auto& [name, v] : sizes)
    TINV_CHECK(v >= 0 && v % 8 == 0, name, "must be a positive multiple of 8 (an SDXL time_ids size), got ", v);
  TINV_CHECK(o.crop_top >= 0, "--crop-top", "must be >= 0, got ", o.crop_top);
  TINV_CHECK(o.crop_left >= 0, "--crop-left", "must be >= 0, got ", o.crop_left);
}

torch::Tensor sdxl_time_ids(const GenerateOptions& o, int64_t width, int64_t height) {
  auto pick = [](int64_t v, int64_t fallback) { return static_cast<float>(v > 0 ? v : fallback); };
  return torch::tensor({pick(o.original_height, height), pick(o.original_width, width), static_cast<float>(o.crop_top),
                        static_cast<float>(o.crop_left), pick(o.target_height, height), pick(o.target_width, width)})
      .unsqueeze(0);  // [1, 6]
}

ExtraTokens add_embeddings(StableDiffusion& sd, const std::vector<std::string>& files) {
  ExtraTokens extra;
  if (files.empty()) return extra;
  TINV_CHECK(sd.tokenizer.has_value(), sd.source, "no tokenizer loaded: embeddings need one");
  TINV_CHECK(sd.tokenizer->base_vocab_size() == sd.text_config.vocab_size, sd.source, "the tokenizer has ",
             sd.tokenizer->base_vocab_size(), " ids but the text encoder ", sd.text_config.vocab_size,
             ": embeddings cannot be added");
  if (sd.is_xl()) TINV_CHECK(sd.tokenizer_2.has_value(), sd.source, "no tokenizer_2 loaded: embeddings need one");
  for (const auto& file : files) {
    const int64_t width_2 = sd.is_xl() ? sd.text_config_2.hidden_size : 0;
    for (const auto& e : load_embeddings(file, sd.text_config.hidden_size, width_2)) {
      try {
        if (sd.is_xl())
          extra.add_trigger(*sd.tokenizer, *sd.tokenizer_2, e.trigger, e.vectors, e.vectors_2);
        else
          extra.add_trigger(*sd.tokenizer, e.trigger, e.vectors);
      } catch (const Error& err) {
        throw Error(file, err.what());
      }
    }
  }
  return extra;
}

void add_rows_trigger(StableDiffusion& sd, ExtraTokens& extra, const std::string& trigger, const torch::Tensor& rows) {
  if (!sd.is_xl()) {
    extra.add_trigger(*sd.tokenizer, trigger, rows);
    return;
  }
  const int64_t h1 = sd.text_config.hidden_size;
  extra.add_trigger(*sd.tokenizer, *sd.tokenizer_2, trigger, rows.narrow(1, 0, h1),
                    rows.narrow(1, h1, rows.size(1) - h1));
}

torch::Tensor encode_ids(StableDiffusion& sd, const ExtraTokens& extra, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  torch::Tensor table = extra.table();
  if (table.defined()) table = table.to(sd.device, sd.dtype);
  return sd.text_encoder->forward(ids.to(sd.device, torch::kLong), table);  // [B, 77, D]
}

torch::Tensor encode_prompt(StableDiffusion& sd, const ExtraTokens& extra, const std::string& prompt, bool* truncated) {
  TINV_CHECK(sd.tokenizer.has_value(), sd.source, "no tokenizer loaded");
  auto enc = sd.tokenizer->encode(extra.expand(prompt));
  if (truncated) *truncated = enc.truncated;
  auto ids = torch::tensor(enc.ids, torch::kLong).unsqueeze(0);  // [1, 77]
  return encode_ids(sd, extra, ids);
}

Conditioning encode_ids_xl(StableDiffusion& sd, const ExtraTokens& extra, const torch::Tensor& ids,
                           const torch::Tensor& ids_2) {
  torch::NoGradGuard no_grad;
  TINV_CHECK(sd.is_xl(), sd.source, "not an SDXL model");
  torch::Tensor t1 = extra.table(), t2 = extra.table_2();
  if (t1.defined()) {
    TINV_CHECK(t2.defined(), sd.source, "SD1/SD2 embeddings cannot be used with an SDXL model");
    t1 = t1.to(sd.device, sd.dtype);
    t2 = t2.to(sd.device, sd.dtype);
  }
  auto s = encode_sdxl_text(sd.text_encoder, sd.text_encoder_2, ids.to(sd.device, torch::kLong),
                            ids_2.to(sd.device, torch::kLong), t1, t2);
  return {s.prompt_embeds, s.pooled};
}

Conditioning encode_text(StableDiffusion& sd, const ExtraTokens& extra, const std::string& prompt, bool* truncated) {
  if (!sd.is_xl()) return {encode_prompt(sd, extra, prompt, truncated), {}};
  TINV_CHECK(sd.tokenizer.has_value() && sd.tokenizer_2.has_value(), sd.source, "no tokenizers loaded");
  const std::string text = extra.expand(prompt);
  auto e1 = sd.tokenizer->encode(text), e2 = sd.tokenizer_2->encode(text);
  if (truncated) *truncated = e1.truncated || e2.truncated;
  return encode_ids_xl(sd, extra, torch::tensor(e1.ids, torch::kLong).unsqueeze(0),
                       torch::tensor(e2.ids, torch::kLong).unsqueeze(0));
}

torch::Tensor denoise(StableDiffusion& sd, Sampler& sampler, const torch::Tensor& latents, const torch::Tensor& cond,
                      const torch::Tensor& uncond, double cfg, const NoiseSource& noise, Progress* progress) {
  return denoise(sd, sampler, latents, Conditioning{cond, {}}, Conditioning{uncond, {}}, cfg, noise, progress, {});
}

torch::Tensor denoise(StableDiffusion& sd, Sampler& sampler, const torch::Tensor& latents, const Conditioning& cond_c,
                      const Conditioning& uncond_c, double cfg, const NoiseSource& noise, Progress* progress,
                      const torch::Tensor& time_ids) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& cond = cond_c.states;
  const torch::Tensor& uncond = uncond_c.states;
  TINV_CHECK(latents.dim() == 4, "denoise", "latents must be [B, C, h, w], got ", latents.sizes());
  TINV_CHECK(sampler.num_steps() > 0, "denoise", "call set_timesteps() on the sampler first");
  const int64_t b = latents.size(0);
  const bool guided = cfg != 1.0;
  auto text = to_batch(cond, b, "cond");
  if (guided) text = torch::cat({to_batch(uncond, b, "uncond"), text});  // [2B, L, D]
  text = text.to(sd.device, sd.dtype);
  AddedConditions added;  // SDXL: pooled [2B or B, P], time_ids [2B or B, 6]
  if (sd.unet_config.text_time()) {
    TINV_CHECK(cond_c.pooled.defined() && (!guided || uncond_c.pooled.defined()) && time_ids.defined(), "denoise",
               "an SDXL UNet needs the pooled prompts and time_ids");
    auto pooled = cond_c.pooled.expand({b, cond_c.pooled.size(-1)});
    if (guided) pooled = torch::cat({uncond_c.pooled.expand({b, uncond_c.pooled.size(-1)}), pooled});
    auto ids = time_ids.to(torch::kFloat32).expand({b, 6});
    if (guided) ids = torch::cat({ids, ids});
    added = {pooled.to(sd.device, sd.dtype), ids.to(sd.device)};
  }
  auto x = latents.to(sd.device, torch::kFloat32);  // [B, C, h, w]
  for (int64_t i = 0; i < sampler.num_steps(); ++i) {
    auto in = sampler.scale_model_input(x, i);
    auto model_in = guided ? torch::cat({in, in}) : in;  // [2B or B, C, h, w]
    auto out = sd.unet->forward(model_in.to(sd.dtype), sampler.timesteps()[i], text, added).to(torch::kFloat32);
    if (guided) {
      auto parts = out.chunk(2);  // uncond, cond: [B, C, h, w]
      out = parts[0] + cfg * (parts[1] - parts[0]);
    }
    x = sampler.step(out, i, x, noise);
    if (progress) progress->update(i + 1);
  }
  return x;
}

torch::Tensor decode_latents(StableDiffusion& sd, const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  auto z = latents.to(sd.device, torch::kFloat32) / sd.vae_config.scaling_factor;
  return sd.vae->decode(z.to(sd.vae_dtype)).to(torch::kFloat32);  // [B, 3, H, W]
}

torch::Tensor to_unit_images(const torch::Tensor& decoded) {
  return ((decoded.to(torch::kCPU, torch::kFloat32) + 1) / 2).clamp(0, 1);
}

NoiseSource per_item_noise(const std::vector<uint64_t>& seeds) {
  auto gens = std::make_shared<std::vector<at::Generator>>();
  for (uint64_t s : seeds) gens->push_back(at::detail::createCPUGenerator(s));
  return [gens](const torch::Tensor& like) {
    TINV_CHECK(like.dim() >= 1 && like.size(0) == static_cast<int64_t>(gens->size()), "noise", "expected a batch of ",
               gens->size(), ", got ", like.sizes());
    auto shape = like.sizes().vec();
    shape[0] = 1;
    std::vector<torch::Tensor> items;
    for (auto& g : *gens) items.push_back(torch::randn(shape, g, torch::kFloat32));
    return torch::cat(items).to(like.device(), like.scalar_type());
  };
}

std::string a1111_sampler_name(const std::string& name) {
  if (name == "ddim") return "DDIM";
  if (name == "euler") return "Euler";
  if (name == "euler_a") return "Euler a";
  if (name == "dpmpp_2m") return "DPM++ 2M";
  if (name == "pndm") return "PLMS";
  return name;
}

GenerateResult generate(StableDiffusion& sd, const ExtraTokens& extra, const GenerateOptions& o) {
  validate(o);
  torch::NoGradGuard no_grad;
  const int64_t f = sd.vae_config.downscale();
  const int64_t width = o.width ? o.width : sd.vae_config.sample_size;
  const int64_t height = o.height ? o.height : sd.vae_config.sample_size;
  TINV_CHECK(width % f == 0, "--width", "must be a multiple of ", f, " for this model, got ", width);
  TINV_CHECK(height % f == 0, "--height", "must be a multiple of ", f, " for this model, got ", height);

  auto sampler = make_sampler(o.sampler, sd.scheduler, o.eta);
  sampler->set_timesteps(o.steps);

  GenerateResult r;
  bool cut_cond = false, cut_uncond = false;
  Conditioning cond = encode_text(sd, extra, o.prompt, &cut_cond);  // [1, 77, D] (+ pooled [1, P])
  Conditioning uncond;
  if (sd.is_xl() && sd.force_zeros_for_empty_prompt && o.negative_prompt.empty() && !o.encode_empty_negative)
    uncond = {torch::zeros_like(cond.states), torch::zeros_like(cond.pooled)};  // diffusers: zeros, not ""
  else
    uncond = encode_text(sd, extra, o.negative_prompt, &cut_uncond);
  r.truncated = cut_cond || cut_uncond;
  torch::Tensor time_ids = sd.is_xl() ? sdxl_time_ids(o, width, height) : torch::Tensor();

  for (int64_t i = 0; i < o.batch; ++i) r.seeds.push_back(o.seed + static_cast<uint64_t>(i));
  NoiseSource noise = per_item_noise(r.seeds);
  auto like = torch::empty({o.batch, sd.unet_config.in_channels, height / f, width / f},
                           torch::TensorOptions().device(sd.device).dtype(torch::kFloat32));
  auto latents = noise(like) * sampler->init_noise_sigma();  // [B, C, h, w]

  Progress progress("generate", sampler->num_steps(), o.progress);
  latents = denoise(sd, *sampler, latents, cond, uncond, o.cfg, noise, &progress, time_ids);
  progress.finish();

  std::vector<torch::Tensor> images;  // decoded one at a time: the VAE is the memory peak
  for (int64_t i = 0; i < o.batch; ++i)
    images.push_back(to_unit_images(decode_latents(sd, latents.slice(0, i, i + 1))));
  r.images = torch::cat(images);  // [B, 3, H, W]

  const std::string name = sampler->name();
  for (uint64_t s : r.seeds) r.image_parameters.push_back(parameters_text(sd, extra, o, name, s, width, height));
  r.parameters = r.image_parameters.front();
  return r;
}

}  // namespace tinv
