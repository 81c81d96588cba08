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
//   tinv::cli::add_quiet(cmd, quiet);          // --quiet: no progress bar
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "common/device.h"
#include "common/threads.h"

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

}  // namespace tinv::cli
