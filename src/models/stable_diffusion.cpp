#include "models/stable_diffusion.h"

#include <cstdio>

#include "common/error.h"
#include "common/fs.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/convert_text.h"
#include "models/convert_unet.h"
#include "models/convert_vae.h"

namespace tinv {
namespace {

constexpr const char* kUnetPrefix = "model.diffusion_model.";
constexpr const char* kVaePrefix = "first_stage_model.";
constexpr const char* kSd1TextPrefix = "cond_stage_model.transformer.";
constexpr const char* kSd2TextPrefix = "cond_stage_model.model.";
// SDXL (Stability's sgm layout): CLIP-L with HF names, OpenCLIP bigG with fused qkv.
constexpr const char* kXlPrefix = "conditioner.embedders.";
constexpr const char* kXlText1Prefix = "conditioner.embedders.0.transformer.";
constexpr const char* kXlText2Prefix = "conditioner.embedders.1.model.";

bool has_prefix(const StateDict& sd, const std::string& prefix) {
  auto it = sd.lower_bound(prefix);
  return it != sd.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

// "F16 x 686, F32 x 2" for the tensors of a safetensors file (or of a StateDict).
std::string dtype_summary(const StateDict& sd) {
  std::map<std::string, int> counts;
  for (const auto& [name, t] : sd) counts[safetensors_dtype_name(t.scalar_type())]++;
  std::string s;
  for (const auto& [dtype, n] : counts) s += (s.empty() ? "" : ", ") + dtype + " x " + std::to_string(n);
  return s;
}

std::string first_existing(const std::string& dir, const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (file_exists(join_path(dir, n))) return join_path(dir, n);
  return "";
}

// FNV-1a over a strided sample of a few weight tensors: identifies the weights, cheaply.
std::string fingerprint_of(const std::vector<torch::Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : tensors) {
    auto flat = t.detach().to(torch::kCPU, torch::kFloat32).flatten();
    int64_t step = std::max<int64_t>(1, flat.numel() / 4096);
    auto sample = flat.slice(0, 0, flat.numel(), step).contiguous();
    const auto* bytes = static_cast<const uint8_t*>(sample.data_ptr());
    for (size_t i = 0; i < static_cast<size_t>(sample.numel()) * 4; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string family_of(const UNetConfig& unet, const ClipTextConfig& text) {
  if (unet.cross_attention_dim == 1024) return "sd2";
  if (unet.cross_attention_dim == 768) return "sd1";
  return text.hidden_act == "gelu" ? "sd2" : "sd1";
}

// SDXL: the UNet's widths must follow from the two encoders.
void check_xl(const StableDiffusion& m, const std::string& source) {
  const int64_t h1 = m.text_config.hidden_size, h2 = m.text_config_2.hidden_size;
  TINV_CHECK(m.unet_config.text_time(), source,
             "SDXL model but the UNet has no text_time addition "
             "embedding (unet/config.json addition_embed_type)");
  TINV_CHECK(m.text_config_2.with_projection, source,
             "text_encoder_2 has no text_projection "
             "(SDXL's second encoder is a CLIPTextModelWithProjection)");
  TINV_CHECK(m.unet_config.cross_attention_dim == h1 + h2, source, "the UNet's cross_attention_dim ",
             m.unet_config.cross_attention_dim, " is not text_encoder + text_encoder_2 widths (", h1, " + ", h2, ")");
  TINV_CHECK(m.unet_config.pooled_dim() == m.text_config_2.projection_dim, source,
             "the UNet's add_embedding expects a ", m.unet_config.pooled_dim(),
             "-wide pooled text, text_encoder_2 projects to ", m.text_config_2.projection_dim);
  if (m.tokenizer && m.tokenizer_2)
    TINV_CHECK(m.tokenizer->base_vocab_size() == m.tokenizer_2->base_vocab_size(), source,
               "tokenizer and tokenizer_2 have different vocabularies (", m.tokenizer->base_vocab_size(), " vs ",
               m.tokenizer_2->base_vocab_size(), " ids)");
}

void finish(StableDiffusion& m, const SdLoadOptions& opts) {
  if (!opts.prediction_type.empty()) {
    TINV_CHECK(
        opts.prediction_type == "epsilon" || opts.prediction_type == "v_prediction" || opts.prediction_type == "sample",
        "--prediction-type", "unknown prediction type '", opts.prediction_type, "' (epsilon, v_prediction or sample)");
    m.scheduler.prediction_type = opts.prediction_type;
  }
  std::vector<torch::Tensor> sample = {
      m.text_encoder->token_embeddings(torch::arange(std::min<int64_t>(1000, m.text_config.vocab_size))),
      m.unet->named_parameters()["conv_in.weight"], m.vae->named_parameters()["decoder.conv_out.weight"]};
  if (m.text_encoder_2)
    sample.push_back(
        m.text_encoder_2->token_embeddings(torch::arange(std::min<int64_t>(1000, m.text_config_2.vocab_size))));
  m.fingerprint = fingerprint_of(sample);
  m.device = opts.device;
  m.dtype = opts.dtype;
  m.vae_dtype = m.is_xl() && opts.dtype == torch::kFloat16 && m.vae_config.force_upcast ? torch::kFloat32 : opts.dtype;
  m.text_encoder->to(opts.device, opts.dtype);
  if (m.text_encoder_2) m.text_encoder_2->to(opts.device, opts.dtype);
  m.unet->to(opts.device, opts.dtype);
  m.vae->to(opts.device, m.vae_dtype);
}

StableDiffusion load_diffusers_folder(const std::string& dir, const SdLoadOptions& opts) {
  StableDiffusion m;
  m.source = dir;
  m.format = "diffusers";
  auto index = JsonConfig::load(join_path(dir, "model_index.json"));
  const bool xl = index.has("text_encoder_2") || index.has("tokenizer_2") ||
                  index.get<std::string>("_class_name", "").find("StableDiffusionXL") == 0;
  for (const char* part : {"text_encoder", "unet", "vae", "scheduler"})
    TINV_CHECK(dir_exists(join_path(dir, part)), dir, "missing component folder '", part,
               "/' (a diffusers Stable Diffusion folder has text_encoder, tokenizer, unet, vae, scheduler)");
  if (xl)
    for (const char* part : {"text_encoder_2", "tokenizer_2"})
      TINV_CHECK(dir_exists(join_path(dir, part)), join_path(dir, part),
                 "missing: an SDXL folder (model_index.json names text_encoder_2) needs text_encoder, "
                 "text_encoder_2, tokenizer, tokenizer_2, unet, vae and scheduler");
  std::string tok_dir = opts.tokenizer_dir.empty() ? join_path(dir, "tokenizer") : opts.tokenizer_dir;
  if (opts.with_tokenizer) {
    m.tokenizer = ClipTokenizer::load(tok_dir);
    if (xl) m.tokenizer_2 = ClipTokenizer::load(join_path(dir, "tokenizer_2"));
  }
  m.text_encoder = load_clip_text_model(join_path(dir, "text_encoder"));
  m.text_config = m.text_encoder->config();
  if (xl) {
    m.text_encoder_2 = load_clip_text_model(join_path(dir, "text_encoder_2"));
    m.text_config_2 = m.text_encoder_2->config();
    m.force_zeros_for_empty_prompt = index.get<bool>("force_zeros_for_empty_prompt", true);
  }
  m.unet = load_unet_folder(join_path(dir, "unet"));
  m.unet_config = m.unet->config();
  m.vae = load_vae_folder(join_path(dir, "vae"));
  m.vae_config = m.vae->config();
  m.scheduler = SchedulerConfig::from_json(JsonConfig::load(join_path(dir, "scheduler/scheduler_config.json")));
  m.family = xl ? "sdxl" : family_of(m.unet_config, m.text_config);
  if (xl)
    check_xl(m, dir);
  else
    TINV_CHECK(!m.unet_config.text_time(), dir,
               "the UNet is SDXL's (text_time) but model_index.json names no text_encoder_2");
  struct Part {
    const char* name;
    std::vector<std::string> files;
  };
  for (const Part& p :
       {Part{"text_encoder", {"model.safetensors", "model.fp16.safetensors"}},
        Part{"text_encoder_2", {"model.safetensors", "model.fp16.safetensors"}},
        Part{"unet", {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"}},
        Part{"vae", {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"}}}) {
    std::string f = first_existing(join_path(dir, p.name), p.files);
    if (!f.empty()) m.file_dtypes[p.name] = dtype_summary(SafeTensors::open(f).state_dict());
  }
  finish(m, opts);
  return m;
}

// The tokenizers of a single file: --tokenizer DIR, else --config DIR/tokenizer; SDXL's second
// from --config DIR/tokenizer_2, else the first one's files padded with "!" (as tokenizer_2 is).
void load_single_file_tokenizers(StableDiffusion& m, const SdLoadOptions& opts, const std::string& path) {
  std::string tok = opts.tokenizer_dir;
  if (tok.empty() && !opts.config_dir.empty()) tok = join_path(opts.config_dir, "tokenizer");
  if (!opts.with_tokenizer) return;
  TINV_CHECK(!tok.empty(), path,
             "single-file checkpoints carry no tokenizer: pass --tokenizer DIR "
             "(a folder with vocab.json and merges.txt) or --config DIR (a diffusers folder)");
  m.tokenizer = ClipTokenizer::load(tok);
  if (!m.is_xl()) return;
  std::string tok2 = opts.config_dir.empty() ? "" : join_path(opts.config_dir, "tokenizer_2");
  if (!tok2.empty() && dir_exists(tok2))
    m.tokenizer_2 = ClipTokenizer::load(tok2);
  else
    m.tokenizer_2 = ClipTokenizer::from_files(join_path(tok, "vocab.json"), join_path(tok, "merges.txt"), "!",
                                              m.tokenizer->max_length());
}

// The UNet and the VAE of a single file from its LDM-named weights and m's configs.
void build_unet_vae(StableDiffusion& m, const StateDict& ldm_unet, const StateDict& ldm_vae, const std::string& path) {
  m.unet = UNet2DConditionModel(m.unet_config);
  load_state_dict(*m.unet, convert_ldm_unet(ldm_unet, m.unet_config), path);
  freeze(*m.unet);
  m.unet->eval();
  m.vae = load_vae_ldm(ldm_vae, m.vae_config, path);
}

// SDXL configs from a diffusers folder `d` (--config DIR).
void xl_configs_from_dir(StableDiffusion& m, const std::string& d) {
  m.unet_config = UNetConfig::from_json(JsonConfig::load(join_path(d, "unet/config.json")));
  m.vae_config = VaeConfig::from_json(JsonConfig::load(join_path(d, "vae/config.json")));
  m.text_config = ClipTextConfig::from_json(JsonConfig::load(join_path(d, "text_encoder/config.json")));
  m.text_config_2 = ClipTextConfig::from_json(JsonConfig::load(join_path(d, "text_encoder_2/config.json")));
  std::string sched = join_path(d, "scheduler/scheduler_config.json");
  m.scheduler = file_exists(sched) ? SchedulerConfig::from_json(JsonConfig::load(sched)) : SchedulerConfig::sdxl();
  std::string index = join_path(d, "model_index.json");
  if (file_exists(index))
    m.force_zeros_for_empty_prompt = JsonConfig::load(index).get<bool>("force_zeros_for_empty_prompt", true);
}

// SDXL configs inferred from the converted weights' shapes (--preset auto without --config).
void infer_xl_configs(StableDiffusion& m, const StateDict& text1, const StateDict& text2, const StateDict& ldm_unet,
                      const StateDict& ldm_vae, const std::string& path) {
  m.text_config = infer_clip_text_config(text1, "quick_gelu");
  m.text_config.pad_token_id = 49407;
  m.text_config_2 = infer_clip_text_config(text2, "gelu");
  m.text_config_2.pad_token_id = 0;
  m.unet_config = infer_unet_config(ldm_unet, /*sd2=*/true, m.text_config_2.projection_dim);
  m.vae_config = infer_vae_config(ldm_vae, path);
  m.vae_config.scaling_factor = VaeConfig::sdxl().scaling_factor;
  m.vae_config.sample_size = m.unet_config.sample_size * m.vae_config.downscale();
  m.scheduler = SchedulerConfig::sdxl();
}

// SDXL single file (Stability's layout): configs from --config DIR, --preset sdxl, or the shapes.
StableDiffusion load_xl_single_file(const std::string& path, const StateDict& sd, const SdLoadOptions& opts) {
  StableDiffusion m;
  m.source = path;
  m.format = "single_file";
  m.family = "sdxl";
  m.force_zeros_for_empty_prompt = true;
  const bool has1 = has_prefix(sd, kXlText1Prefix), has2 = has_prefix(sd, kXlText2Prefix);
  TINV_CHECK(has1 && has2, path, "SDXL checkpoint with only one text encoder: no '",
             has1 ? kXlText2Prefix : kXlText1Prefix, "*' tensors (SDXL needs CLIP-L under '", kXlText1Prefix,
             "' and OpenCLIP bigG under '", kXlText2Prefix, "')");
  if (opts.preset != "auto")
    TINV_CHECK(opts.preset == "sdxl", "--preset", "'", opts.preset, "' does not fit an SDXL checkpoint (auto or sdxl)");
  StateDict ldm_unet = strip_prefix(sd, kUnetPrefix);
  StateDict ldm_vae = strip_prefix(sd, kVaePrefix);
  StateDict text1 = convert_ldm_clip_text(sd, kXlText1Prefix);
  const bool from_dir = !opts.config_dir.empty();
  if (from_dir) {
    xl_configs_from_dir(m, opts.config_dir);
  } else if (opts.preset == "sdxl") {
    m.unet_config = UNetConfig::sdxl();
    m.vae_config = VaeConfig::sdxl();
    m.text_config = ClipTextConfig::sdxl_l();
    m.text_config_2 = ClipTextConfig::sdxl_g();
    m.scheduler = SchedulerConfig::sdxl();
  }
  // Every OpenCLIP block is kept: SDXL reads the penultimate state and pools the last one.
  int64_t layers2 = from_dir || opts.preset == "sdxl" ? m.text_config_2.num_hidden_layers : -1;
  StateDict text2 = convert_openclip_text(sd, layers2, kXlText2Prefix, /*with_projection=*/true);
  if (!from_dir && opts.preset == "auto") infer_xl_configs(m, text1, text2, ldm_unet, ldm_vae, path);
  m.text_encoder = ClipTextModel(m.text_config);
  load_clip_text_weights(m.text_encoder, text1, path);
  m.text_encoder_2 = ClipTextModel(m.text_config_2);
  load_clip_text_weights(m.text_encoder_2, text2, path);
  build_unet_vae(m, ldm_unet, ldm_vae, path);
  m.file_dtypes["text_encoder"] = dtype_summary(text1);
  m.file_dtypes["text_encoder_2"] = dtype_summary(text2);
  m.file_dtypes["unet"] = dtype_summary(ldm_unet);
  m.file_dtypes["vae"] = dtype_summary(ldm_vae);
  load_single_file_tokenizers(m, opts, path);
  check_xl(m, path);
  finish(m, opts);
  return m;
}

// SD1/SD2 configs: explicit folder, else preset, else inferred from shapes (the text encoder's
// is inferred later, from its converted weights).
void sd_configs(StableDiffusion& m, const SdLoadOptions& opts, const StateDict& ldm_unet, const StateDict& ldm_vae,
                const std::string& path) {
  const bool sd2 = m.family == "sd2";
  if (!opts.config_dir.empty()) {
    m.unet_config = UNetConfig::from_json(JsonConfig::load(join_path(opts.config_dir, "unet/config.json")));
    m.vae_config = VaeConfig::from_json(JsonConfig::load(join_path(opts.config_dir, "vae/config.json")));
    m.text_config = ClipTextConfig::from_json(JsonConfig::load(join_path(opts.config_dir, "text_encoder/config.json")));
    std::string sched = join_path(opts.config_dir, "scheduler/scheduler_config.json");
    m.scheduler = file_exists(sched) ? SchedulerConfig::from_json(JsonConfig::load(sched))
                                     : (sd2 ? SchedulerConfig::sd21_v() : SchedulerConfig::sd15());
  } else if (opts.preset == "sd15" || opts.preset == "sd21") {
    bool p2 = opts.preset == "sd21";
    m.unet_config = p2 ? UNetConfig::sd21() : UNetConfig::sd15();
    m.vae_config = p2 ? VaeConfig::sd21() : VaeConfig::sd15();
    m.text_config = p2 ? ClipTextConfig::sd21() : ClipTextConfig::sd15();
    m.scheduler = p2 ? SchedulerConfig::sd21_v() : SchedulerConfig::sd15();
  } else {
    m.unet_config = infer_unet_config(ldm_unet, sd2);
    m.vae_config = infer_vae_config(ldm_vae, path);
    m.scheduler = sd2 ? SchedulerConfig::sd21_v() : SchedulerConfig::sd15();
    if (sd2 && opts.prediction_type.empty())
      std::fprintf(stderr,
                   "tinv: note: %s: SD2 checkpoints do not record their prediction type; "
                   "assuming v_prediction (768-v). Use --prediction-type epsilon for 512-base models.\n",
                   path.c_str());
  }
}

// Text encoder weights: SD1 HF names under cond_stage_model.transformer., SD2 OpenCLIP names.
StateDict sd_text_weights(const StableDiffusion& m, const SdLoadOptions& opts, const StateDict& sd) {
  if (!has_prefix(sd, kSd2TextPrefix)) return convert_ldm_clip_text(sd);
  int64_t blocks = count_openclip_blocks(sd);
  // SD2 conditions on the penultimate OpenCLIP block: keep one block fewer than the file has,
  // unless a config says how many layers the text encoder has.
  int64_t layers = !opts.config_dir.empty() || opts.preset == "sd21" ? m.text_config.num_hidden_layers : blocks - 1;
  return convert_openclip_text(sd, layers);
}

StableDiffusion load_single_file(const std::string& path, const SdLoadOptions& opts) {
  StableDiffusion m;
  m.source = path;
  m.format = "single_file";
  StateDict sd = load_state_dict_file(path);
  if (has_prefix(sd, kXlPrefix)) {
    TINV_CHECK(has_prefix(sd, kUnetPrefix), path, "not a Stable Diffusion checkpoint: no '", kUnetPrefix, "*' tensors");
    TINV_CHECK(has_prefix(sd, kVaePrefix), path, "no VAE ('", kVaePrefix, "*' tensors) in the checkpoint");
    return load_xl_single_file(path, sd, opts);
  }
  // .ckpt-style EMA copies and training buffers are not part of the model.
  TINV_CHECK(has_prefix(sd, kUnetPrefix), path, "not a Stable Diffusion checkpoint: no '", kUnetPrefix, "*' tensors");
  TINV_CHECK(has_prefix(sd, kVaePrefix), path, "no VAE ('", kVaePrefix, "*' tensors) in the checkpoint");
  TINV_CHECK(has_prefix(sd, kSd1TextPrefix) || has_prefix(sd, kSd2TextPrefix), path, "no text encoder ('",
             kSd1TextPrefix, "*' or '", kSd2TextPrefix, "*') in the checkpoint");
  m.family = detect_single_file_family(sd, path);
  if (opts.preset != "auto")
    TINV_CHECK(opts.preset == "sd15" || opts.preset == "sd21", "--preset", "unknown preset '", opts.preset,
               "' (auto, sd15 or sd21)");

  StateDict ldm_unet = strip_prefix(sd, kUnetPrefix);
  StateDict ldm_vae = strip_prefix(sd, kVaePrefix);
  const bool openclip = has_prefix(sd, kSd2TextPrefix);
  sd_configs(m, opts, ldm_unet, ldm_vae, path);
  StateDict text = sd_text_weights(m, opts, sd);
  if (opts.config_dir.empty() && opts.preset == "auto")
    m.text_config = infer_clip_text_config(text, openclip ? "gelu" : "quick_gelu");

  m.text_encoder = ClipTextModel(m.text_config);
  load_clip_text_weights(m.text_encoder, text, path);
  build_unet_vae(m, ldm_unet, ldm_vae, path);

  m.file_dtypes["text_encoder"] = dtype_summary(text);
  m.file_dtypes["unet"] = dtype_summary(ldm_unet);
  m.file_dtypes["vae"] = dtype_summary(ldm_vae);
  TINV_CHECK(!m.unet_config.text_time(), path,
             "the UNet is SDXL's (label_emb / text_time) but the "
             "checkpoint has no SDXL text encoders ('",
             kXlPrefix, "*')");
  load_single_file_tokenizers(m, opts, path);
  finish(m, opts);
  return m;
}

}  // namespace

std::string detect_single_file_family(const StateDict& sd, const std::string& source) {
  if (has_prefix(sd, kXlPrefix)) return "sdxl";
  auto it = sd.find("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
  if (it != sd.end() && it->second.dim() == 2) {
    if (it->second.size(1) == 1024) return "sd2";
    if (it->second.size(1) == 768) return "sd1";
  }
  if (has_prefix(sd, kSd2TextPrefix)) return "sd2";
  if (has_prefix(sd, kSd1TextPrefix)) return "sd1";
  throw Error(source, "cannot tell SD1 from SD2: no text encoder and no cross-attention weights");
}

StableDiffusion load_stable_diffusion(const std::string& path, const SdLoadOptions& opts) {
  if (dir_exists(path)) {
    TINV_CHECK(file_exists(join_path(path, "model_index.json")), path,
               "not a diffusers pipeline folder (no model_index.json)");
    return load_diffusers_folder(path, opts);
  }
  TINV_CHECK(file_exists(path), path, "no such file or folder");
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  TINV_CHECK(lower.size() < 5 ||
                 (lower.compare(lower.size() - 5, 5, ".ckpt") != 0 && lower.compare(lower.size() - 4, 4, ".bin") != 0),
             path,
             "pickle checkpoints (.ckpt/.bin) are not loaded (they can run code); convert "
             "it to .safetensors first");
  return load_single_file(path, opts);
}

StableDiffusion random_stable_diffusion(const UNetConfig& unet, const VaeConfig& vae, const ClipTextConfig& text,
                                        uint64_t seed, const std::optional<ClipTextConfig>& text_2) {
  torch::manual_seed(seed);
  StableDiffusion m;
  m.source = "random";
  m.format = "random";
  m.unet_config = unet;
  m.vae_config = vae;
  m.text_config = text;
  m.scheduler = SchedulerConfig::sd15();
  m.text_encoder = ClipTextModel(text);
  m.unet = UNet2DConditionModel(unet);
  init_random(*m.unet, seed);
  freeze(*m.unet);
  m.unet->eval();
  m.vae = AutoencoderKL(vae);
  freeze(*m.vae);
  m.vae->eval();
  m.family = family_of(unet, text);
  if (text_2) {
    m.family = "sdxl";
    m.text_config_2 = *text_2;
    m.text_encoder_2 = ClipTextModel(*text_2);
    m.scheduler = SchedulerConfig::sdxl();
    m.force_zeros_for_empty_prompt = true;
    check_xl(m, "random SDXL");
  }
  SdLoadOptions opts;
  finish(m, opts);
  return m;
}

}  // namespace tinv
