// Subcommands of `fluxcpp`. Each cmd_*.cc registers itself with a static FLUX_COMMAND object; main()
// adds them to the CLI11 app in name order and runs the one chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace flux::cli {

struct Command {
  std::string name;
  std::string help;
  // Declares options on `sub` and returns the action to run once parsing succeeded (exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& commands();

struct CommandRegistrar {
  explicit CommandRegistrar(Command command) { commands().push_back(std::move(command)); }
};

}  // namespace flux::cli
