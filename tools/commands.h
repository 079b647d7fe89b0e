#pragma once
// The `sd` subcommands: each registers its options on a CLI11 subcommand and returns the code to run.
#include <CLI/CLI.hpp>

#include <functional>

namespace sd_cli {

using Run = std::function<int()>;

Run add_generate(CLI::App& app);
Run add_tokenize(CLI::App& app);
Run add_inspect(CLI::App& app);
Run add_serve(CLI::App& app);

}  // namespace sd_cli
