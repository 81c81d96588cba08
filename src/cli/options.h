// Options several subcommands share, declared once: the same flag name, help text and default
// display everywhere. Each returns the CLI11 option so a command can add to it. The command
// line's text ends here: typed options are parsed into the apps' enums, paths and devices when
// the command line is read (a bad value is a one-line tinv::Error naming the option, exit 1).
//
//   tinv::cli::add_device(cmd, o.device);      // --device auto | cpu | cuda | cuda:N
//   tinv::cli::add_dtype(cmd, o.dtype);        // --dtype fp32 | bf16 | fp16 (CUDA)
//   tinv::cli::add_parsed(cmd, "--init", o.init, parse_init_mode, "caption | class | token")
//       ->default_str(to_string(o.init));      // any option with a parse function
//   tinv::cli::add_threads(cmd);               // --threads N: CPU threads (0: one per core)
//   tinv::cli::add_attention_store(cmd);       // --attention-store auto | off | GB (training)
//   tinv::cli::add_quiet(cmd, quiet);          // --quiet: no progress bar
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <string>

#include "common/device.h"
#include "common/error.h"
#include "common/threads.h"
#include "nn/attention_ops.h"

namespace tinv::cli {

// An option whose text `parse` turns into `field` (parse throws tinv::Error naming the option).
// `field` must outlive the command (a member of the command's shared options struct).
template <typename T, typename Parse>
CLI::Option* add_parsed(CLI::App* cmd, const std::string& name, T& field, Parse parse, const std::string& help) {
  return cmd->add_option_function<std::string>(
      name, [&field, parse](const std::string& text) { field = parse(text); }, help);
}

// --device: where the models run (parse_device; whether the machine has it is checked when the
// command runs, by resolve_device).
inline CLI::Option* add_device(CLI::App* cmd, DeviceChoice& device,
                               const std::string& help = "auto | cpu | cuda | cuda:N (auto: CUDA when available)") {
  return add_parsed(cmd, "--device", device, parse_device, help)->default_str(device_name(device));
}

// --dtype: the weights' and activations' compute dtype (parse_dtype; check_dtype when it runs).
inline CLI::Option* add_dtype(CLI::App* cmd, torch::ScalarType& dtype,
                              const std::string& help = "fp32 | bf16 | fp16 (CUDA only)") {
  return add_parsed(cmd, "--dtype", dtype, parse_dtype, help)->default_str(dtype_name(dtype));
}

// --threads: libtorch's CPU threads, set when the option is read (tinv::use_threads). Without it
// the command runs on what the executable set before main (common/executable_init.cpp):
// OMP_NUM_THREADS, else one thread per physical core.
inline CLI::Option* add_threads(CLI::App* cmd) {
  return cmd
      ->add_option_function<int>(
          "--threads", [](const int& n) { use_threads(n); }, "CPU threads (0: OMP_NUM_THREADS, else one per core)")
      ->default_str("0");
}

// --quiet: no progress bars on stderr.
inline CLI::Option* add_quiet(CLI::App* cmd, bool& quiet, const std::string& help = "No progress bar") {
  return cmd->add_flag("--quiet", quiet, help);
}

// --model: a Stable Diffusion model; `what` completes the help ("default: the bundled world-sd").
inline CLI::Option* add_model(CLI::App* cmd, std::string& model,
                              const std::string& help =
                                  "Stable Diffusion model: diffusers folder or single-file "
                                  "checkpoint (.safetensors); default: the bundled world-sd") {
  return cmd->add_option("--model", model, help);
}

// --captioner: a BLIP folder in the HF layout.
inline CLI::Option* add_captioner(CLI::App* cmd, std::string& captioner,
                                  const std::string& help =
                                      "BLIP folder (config.json, model.safetensors, vocab.txt); "
                                      "default: the bundled world-blip") {
  return cmd->add_option("--captioner", captioner, help);
}

// --unnamed-dot (world train, render, eval): world v2.1's SceneRules::unnamed_dot.
inline CLI::Option* add_unnamed_dot(CLI::App* cmd, double& value) {
  return cmd
      ->add_option("--unnamed-dot", value,
                   "Chance that a ringed object also carries a dot its caption does not name (world v2.1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
}

// "auto" | "off" | a size in GB (0 = off) -> set_attention_store's bytes.
inline int64_t parse_attention_store(const std::string& text) {
  if (text == "auto") return kAttentionStoreAuto;
  if (text == "off") return 0;
  size_t used = 0;
  double gb = -1;
  try {
    gb = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(gb) || gb < 0 || gb > 1e6)
    throw Error("--attention-store", "must be auto, off or a size in GB (e.g. 4), got '" + text + "'");
  return static_cast<int64_t>(gb * double(int64_t{1} << 30));
}
// Training commands: how many GB of attention probabilities the backward may keep instead of
// recomputing them (nn/attention_ops.h).
inline CLI::Option* add_attention_store(CLI::App* cmd) {
  return cmd
      ->add_option_function<std::string>(
          "--attention-store", [](const std::string& text) { set_attention_store(parse_attention_store(text)); },
          "Attention probabilities kept for the backward instead of recomputed, libtorch 1.13 and bf16 on the "
          "CPU: auto (from the free memory) | off | GB")
      ->default_str("auto");
}

}  // namespace tinv::cli
