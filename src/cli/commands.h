// Subcommands of the tinv CLI; each file under src/cli/ adds one to the app.
#pragma once

namespace CLI {
class App;
}

namespace tinv::cli {

void add_parity(CLI::App& app);
void add_info(CLI::App& app);
void add_caption(CLI::App& app);
void add_world(CLI::App& app);
void add_world_eval(CLI::App* world);  // `world eval`, under add_world's subcommand
void add_generate(CLI::App& app);
void add_invert(CLI::App& app);
void add_demo(CLI::App& app);
void add_study(CLI::App& app);

}  // namespace tinv::cli
