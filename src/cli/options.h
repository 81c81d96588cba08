// Options several subcommands share, declared once: the same flag name, help text and default
// display everywhere. Each returns the CLI11 option so a command can add to it.
//
//   tinv::cli::add_device(cmd, o.device);      // --device auto | cpu | cuda | cuda:N
//   tinv::cli::add_dtype(cmd, o.dtype);        // --dtype fp32 | bf16 | fp16 (CUDA)
//   tinv::cli::add_quiet(cmd, quiet);          // --quiet: no progress bar
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace tinv::cli {

// --device: where the models run. Checked when the command runs (resolve_device, one-line
// error naming --device).
inline CLI::Option* add_device(CLI::App* cmd, std::string& device,
                               const std::string& help = "auto | cpu | cuda | cuda:N (auto: CUDA when available)") {
  return cmd->add_option("--device", device, help)->capture_default_str();
}

// --dtype: the weights' and activations' compute dtype (resolve_dtype checks it).
inline CLI::Option* add_dtype(CLI::App* cmd, std::string& dtype) {
  return cmd->add_option("--dtype", dtype, "fp32 | bf16 | fp16 (CUDA only)")->capture_default_str();
}

// --quiet: no progress bars on stderr.
inline CLI::Option* add_quiet(CLI::App* cmd, bool& quiet, const std::string& help = "No progress bar") {
  return cmd->add_flag("--quiet", quiet, help);
}

// --model: a Stable Diffusion model; `what` completes the help ("default: the bundled world-sd").
inline CLI::Option* add_model(CLI::App* cmd, std::string& model,
                              const std::string& help = "Stable Diffusion model: diffusers folder or single-file "
                                                        "checkpoint (.safetensors); default: the bundled world-sd") {
  return cmd->add_option("--model", model, help);
}

// --captioner: a BLIP folder in the HF layout.
inline CLI::Option* add_captioner(CLI::App* cmd, std::string& captioner,
                                  const std::string& help = "BLIP folder (config.json, model.safetensors, vocab.txt); "
                                                            "default: the bundled world-blip") {
  return cmd->add_option("--captioner", captioner, help);
}

}  // namespace tinv::cli
