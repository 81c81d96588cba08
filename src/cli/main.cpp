// tinv: textual inversion for Stable Diffusion. Entry point: parses the subcommand and turns
// every error into one line on stderr and a non-zero exit status.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <torch/version.h>

#include "cli/commands.h"
#include "common/blas.h"
#include "common/error.h"
#include "common/memory.h"

// Before main, common/executable_init.cpp has fixed OpenBLAS's kernels and set the threads.
int main(int argc, char** argv) {
  CLI::App app{"tinv: textual inversion for Stable Diffusion (caption initialisation)", "tinv"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tinv 0.1.0 (libtorch " TORCH_VERSION ", malloc: ") +
                                        tinv::malloc_implementation() + ", blas: " + tinv::blas_description() +
                                        ", threads: " + std::to_string(at::get_num_threads()) + ")");
  tinv::cli::add_parity(app);
  tinv::cli::add_info(app);
  tinv::cli::add_generate(app);
  tinv::cli::add_invert(app);
  tinv::cli::add_caption(app);
  tinv::cli::add_world(app);
  tinv::cli::add_demo(app);
  tinv::cli::add_study(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help, version and silent runtime errors as CLI11 does; every usage error in one line.
    const std::string name = e.get_name();
    if (e.get_exit_code() == 0 || name == "RuntimeError" || name == "CallForHelp" || name == "CallForAllHelp" ||
        name == "CallForVersion")
      return app.exit(e);
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
    std::fprintf(stderr, "tinv: error: %s\n", what.c_str());
    return e.get_exit_code();
  } catch (const tinv::Error& e) {
    std::fprintf(stderr, "tinv: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
    std::fprintf(stderr, "tinv: error: %s\n", what.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tinv: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
