#pragma once
// The `sd` subcommands: each registers its options on a CLI11 subcommand and returns the code to run.
#include <CLI/CLI.hpp>

#include <functional>
#include <stdexcept>
#include <string>

namespace sd_cli {

// A bad argument found only once the model is known (e.g. more steps than its schedule has):
// reported like CLI11's parse errors, with exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Run = std::function<int()>;

Run add_generate(CLI::App& app);
Run add_tokenize(CLI::App& app);
Run add_inspect(CLI::App& app);
Run add_serve(CLI::App& app);

}  // namespace sd_cli
