// `tinv info MODEL`: what a checkpoint is.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"
#include "common/error.h"

namespace tinv::cli {

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model: family, components, parameters, dtypes");
  auto model = std::make_shared<std::string>();
  cmd->add_option("model", *model, "Diffusers folder or single-file checkpoint")->required();
  cmd->callback([model] { throw Error(*model, "tinv info is not implemented yet"); });
}

}  // namespace tinv::cli
