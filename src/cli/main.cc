// fluxcpp: FLUX.1 text-to-image. `fluxcpp --help` lists the subcommands.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>

#include "base/cpu.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/command.h"

namespace flux::cli {

std::vector<Command>& commands() {
  static std::vector<Command> list;
  return list;
}

}  // namespace flux::cli

int main(int argc, char** argv) {
  using namespace flux;
  CLI::App app{"fluxcpp: FLUX.1 (schnell, dev) text-to-image on the CPU"};
  app.set_version_flag("--version", std::string("fluxcpp ") + FLUX_VERSION);
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log", log_level, "log level: debug, info, warn, error, off")->envname("FLUX_LOG");

  auto& list = cli::commands();
  std::sort(list.begin(), list.end(), [](const cli::Command& a, const cli::Command& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  for (const auto& command : list) {
    CLI::App* sub = app.add_subcommand(command.name, command.help);
    actions.emplace_back(sub, command.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (!log_level.empty()) set_log_level(parse_log_level(log_level));
    cpu_features();  // checks FLUX_CPU before any command runs
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const Error& e) {
    std::fprintf(stderr, "fluxcpp: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fluxcpp: internal error: %s\n", e.what());
    return 2;
  }
  return 1;
}
