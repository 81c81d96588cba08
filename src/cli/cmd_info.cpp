// `tinv info MODEL`: what a checkpoint is — family, format, components with parameter counts
// and the dtypes stored in the file, prediction type, scheduler, key config values.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "io/state_dict.h"
#include "models/stable_diffusion.h"

namespace tinv::cli {
namespace {

struct InfoArgs {
  std::string model, config_dir, tokenizer_dir, preset = "auto", prediction_type;
  bool json = false;
};

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (auto x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

StableDiffusion load_for_info(const InfoArgs& a) {
  SdLoadOptions opts;
  opts.config_dir = a.config_dir;
  opts.tokenizer_dir = a.tokenizer_dir;
  opts.preset = a.preset;
  opts.prediction_type = a.prediction_type;
  // A single file without --tokenizer/--config is still described (without its tokenizer).
  opts.with_tokenizer = !(a.config_dir.empty() && a.tokenizer_dir.empty()) || a.model.empty() ||
                        a.model.back() == '/' || a.model.find(".safetensors") == std::string::npos;
  return load_stable_diffusion(a.model, opts);
}

nlohmann::ordered_json component_json(StableDiffusion& sd, const char* name, torch::nn::Module& m) {
  nlohmann::ordered_json c;
  c["parameters"] = count_parameters(m);
  if (sd.file_dtypes.count(name)) c["file_dtypes"] = sd.file_dtypes.at(name);
  return c;
}

nlohmann::ordered_json tokenizer_json(const ClipTokenizer& t) {
  return {{"vocab_size", t.base_vocab_size()}, {"max_length", t.max_length()}, {"pad_id", t.pad_id()}};
}

// The text encoders' and the tokenizers' entries.
void add_text_json(StableDiffusion& sd, nlohmann::ordered_json& j) {
  j["text_encoder"] = component_json(sd, "text_encoder", *sd.text_encoder);
  j["text_encoder"]["config"] = {{"hidden_size", sd.text_config.hidden_size},
                                 {"layers", sd.text_config.num_hidden_layers},
                                 {"heads", sd.text_config.num_attention_heads},
                                 {"activation", sd.text_config.hidden_act},
                                 {"vocab_size", sd.text_config.vocab_size}};
  if (sd.text_encoder_2) {
    j["text_encoder_2"] = component_json(sd, "text_encoder_2", *sd.text_encoder_2);
    j["text_encoder_2"]["config"] = {
        {"hidden_size", sd.text_config_2.hidden_size},       {"layers", sd.text_config_2.num_hidden_layers},
        {"heads", sd.text_config_2.num_attention_heads},     {"activation", sd.text_config_2.hidden_act},
        {"projection_dim", sd.text_config_2.projection_dim}, {"vocab_size", sd.text_config_2.vocab_size}};
  }
}

// The UNet's and the VAE's entries.
void add_image_json(StableDiffusion& sd, nlohmann::ordered_json& j) {
  j["unet"] = component_json(sd, "unet", *sd.unet);
  j["unet"]["config"] = {{"block_out_channels", sd.unet_config.block_out_channels},
                         {"heads", sd.unet_config.num_attention_heads},
                         {"cross_attention_dim", sd.unet_config.cross_attention_dim},
                         {"use_linear_projection", sd.unet_config.use_linear_projection},
                         {"upcast_attention", sd.unet_config.upcast_attention},
                         {"sample_size", sd.unet_config.sample_size}};
  j["unet"]["config"]["transformer_layers_per_block"] = sd.unet_config.transformer_layers_per_block;
  if (sd.unet_config.text_time())
    j["unet"]["config"]["addition_embed_type"] = sd.unet_config.addition_embed_type,
    j["unet"]["config"]["addition_time_embed_dim"] = sd.unet_config.addition_time_embed_dim;
  j["vae"] = component_json(sd, "vae", *sd.vae);
  j["vae"]["config"] = {{"block_out_channels", sd.vae_config.block_out_channels},
                        {"latent_channels", sd.vae_config.latent_channels},
                        {"scaling_factor", sd.vae_config.scaling_factor},
                        {"sample_size", sd.vae_config.sample_size},
                        {"force_upcast", sd.vae_config.force_upcast}};
}

nlohmann::ordered_json info_json(StableDiffusion& sd) {
  nlohmann::ordered_json j;
  j["source"] = sd.source;
  j["format"] = sd.format;
  j["family"] = sd.is_xl()           ? "Stable Diffusion XL (SDXL)"
                : sd.family == "sd2" ? "Stable Diffusion 2.x"
                                     : "Stable Diffusion 1.x";
  j["prediction_type"] = sd.scheduler.prediction_type;
  j["scheduler"] = sd.scheduler.class_name;
  j["fingerprint"] = sd.fingerprint;
  add_text_json(sd, j);
  add_image_json(sd, j);
  if (sd.tokenizer) j["tokenizer"] = tokenizer_json(*sd.tokenizer);
  if (sd.tokenizer_2) j["tokenizer_2"] = tokenizer_json(*sd.tokenizer_2);
  if (sd.is_xl()) j["force_zeros_for_empty_prompt"] = sd.force_zeros_for_empty_prompt;
  return j;
}

std::string millions(int64_t n) { return str_cat(n / 1e6, "M"); }

void print_tokenizer(const char* label, const ClipTokenizer& t) {
  std::printf("%s %lld tokens, max length %lld, pad id %lld\n", label, static_cast<long long>(t.base_vocab_size()),
              static_cast<long long>(t.max_length()), static_cast<long long>(t.pad_id()));
}

void print_text_encoders(StableDiffusion& sd, const nlohmann::ordered_json& j) {
  std::printf("text encoder %s params, %lld wide, %lld layers, %lld heads, %s [%s]\n",
              millions(j["text_encoder"]["parameters"].get<int64_t>()).c_str(),
              static_cast<long long>(sd.text_config.hidden_size),
              static_cast<long long>(sd.text_config.num_hidden_layers),
              static_cast<long long>(sd.text_config.num_attention_heads), sd.text_config.hidden_act.c_str(),
              sd.file_dtypes["text_encoder"].c_str());
  if (sd.text_encoder_2)
    std::printf("text enc. 2  %s params, %lld wide, %lld layers, %lld heads, %s, projection %lld [%s]\n",
                millions(j["text_encoder_2"]["parameters"].get<int64_t>()).c_str(),
                static_cast<long long>(sd.text_config_2.hidden_size),
                static_cast<long long>(sd.text_config_2.num_hidden_layers),
                static_cast<long long>(sd.text_config_2.num_attention_heads), sd.text_config_2.hidden_act.c_str(),
                static_cast<long long>(sd.text_config_2.projection_dim), sd.file_dtypes["text_encoder_2"].c_str());
}

// The text form of `tinv info` (j: info_json(sd)).
void print_info(StableDiffusion& sd, const nlohmann::ordered_json& j) {
  std::printf("model        %s (%s)\n", sd.source.c_str(), sd.format.c_str());
  std::printf("family       %s\n", j["family"].get<std::string>().c_str());
  std::printf("prediction   %s (scheduler %s)\n", sd.scheduler.prediction_type.c_str(),
              sd.scheduler.class_name.c_str());
  std::printf("fingerprint  %s\n", sd.fingerprint.c_str());
  print_text_encoders(sd, j);
  std::printf("unet         %s params, channels %s, heads %s, transformer depth %s, cross %lld%s%s%s [%s]\n",
              millions(j["unet"]["parameters"].get<int64_t>()).c_str(),
              join_ints(sd.unet_config.block_out_channels).c_str(),
              join_ints(sd.unet_config.num_attention_heads).c_str(),
              join_ints(sd.unet_config.transformer_layers_per_block).c_str(),
              static_cast<long long>(sd.unet_config.cross_attention_dim),
              sd.unet_config.use_linear_projection ? ", linear proj" : "",
              sd.unet_config.upcast_attention ? ", upcast attention" : "",
              sd.unet_config.text_time() ? ", text_time added conditions" : "", sd.file_dtypes["unet"].c_str());
  std::printf("vae          %s params, channels %s, latent %lld, scaling %.5g [%s]\n",
              millions(j["vae"]["parameters"].get<int64_t>()).c_str(),
              join_ints(sd.vae_config.block_out_channels).c_str(),
              static_cast<long long>(sd.vae_config.latent_channels), sd.vae_config.scaling_factor,
              sd.file_dtypes["vae"].c_str());
  if (sd.tokenizer)
    print_tokenizer("tokenizer   ", *sd.tokenizer);
  else
    std::printf("tokenizer    (none: single-file checkpoints carry none; pass --tokenizer DIR)\n");
  if (sd.tokenizer_2) print_tokenizer("tokenizer 2 ", *sd.tokenizer_2);
}

void run_info(const InfoArgs& a) {
  StableDiffusion sd = load_for_info(a);
  const nlohmann::ordered_json j = info_json(sd);
  if (a.json)
    std::cout << j.dump(2) << "\n";
  else
    print_info(sd, j);
}

}  // namespace

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model: family, components, parameters, dtypes");
  auto a = std::make_shared<InfoArgs>();
  cmd->add_option("model", a->model, "Diffusers folder or single-file checkpoint (.safetensors)")->required();
  cmd->add_option("--config", a->config_dir, "Diffusers folder whose configs/tokenizer a single file uses");
  cmd->add_option("--tokenizer", a->tokenizer_dir, "Tokenizer folder (vocab.json, merges.txt)");
  cmd->add_option("--preset", a->preset, "Single files: auto (from shapes), sd15, sd21 or sdxl")
      ->check(CLI::IsMember({"auto", "sd15", "sd21", "sdxl"}));
  cmd->add_option("--prediction-type", a->prediction_type, "Override: epsilon or v_prediction");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] { run_info(*a); });
}

}  // namespace tinv::cli
