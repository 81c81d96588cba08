// `tinv parity DIR [--only GROUPS] [--device DEV] [--dtype fp32|bf16]`: the conformance runner.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/device.h"
#include "parity/parity.h"

namespace tinv::cli {

void add_parity(CLI::App& app) {
  auto* cmd = app.add_subcommand("parity", "Run every parity case of a fixture folder");
  auto dir = std::make_shared<std::string>();
  auto only = std::make_shared<std::vector<std::string>>();
  auto device = std::make_shared<DeviceChoice>(torch::Device(torch::kCPU));
  auto dtype = std::make_shared<torch::ScalarType>(torch::kFloat32);
  cmd->add_option("dir", *dir, "Fixture folder (model/ and cases/)")->required();
  cmd->add_option("--only", *only,
                  "Comma-separated case groups (tokenizer, text_encoder, unet, "
                  "vae, single_file, scheduler, pipeline, ti_train, embedding, blip)")
      ->delimiter(',');
  add_device(cmd, *device, "cpu | cuda | cuda:N | auto: where models and inputs go");
  add_threads(cmd);
  add_dtype(cmd, *dtype, "fp32 | bf16: the models' weights and inputs (bf16 tolerances: docs/PERFORMANCE.md)");
  cmd->callback([dir, only, device, dtype] {
    auto dev = resolve_device(*device);
    check_dtype(*dtype, dev);
    // fp32 cases are checked at fp32's tolerances: no TF32 on a GPU (common/device.h).
    if (dev.is_cuda() && *dtype == torch::kFloat32) set_cuda_tf32(false);
    int failures = parity::run(*dir, *only, std::cout, dev, *dtype);
    if (failures) throw CLI::RuntimeError(1);
  });
}

}  // namespace tinv::cli
