// sd: generate images, tokenize prompts, inspect checkpoints, serve HTTP.
// Exit codes: 0 success, 1 runtime error (one line on stderr), 2 bad arguments.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "sd/build_info.h"
#include "sd/log.h"

int main(int argc, char** argv) {
  CLI::App app{"sd - Stable Diffusion on LibTorch (libsd)"};
  // --version: what was built against what (LibTorch, CUDA, cuDNN) and the GPUs visible now.
  app.set_version_flag("--version", [] { return sd::build_info_line(); });
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("--verbose", verbose, "on errors, the full message (LibTorch's C++ backtrace included); debug logging");
  app.fallthrough();  // --verbose also after the subcommand
  std::vector<std::pair<CLI::App*, sd_cli::Run>> commands;
  auto* generate = app.add_subcommand("generate", "text-to-image");
  commands.emplace_back(generate, sd_cli::add_generate(*generate));
  auto* tokenize = app.add_subcommand("tokenize", "print the CLIP token ids of a prompt");
  commands.emplace_back(tokenize, sd_cli::add_tokenize(*tokenize));
  auto* inspect = app.add_subcommand("inspect", "describe a model folder or checkpoint file");
  commands.emplace_back(inspect, sd_cli::add_inspect(*inspect));
  auto* serve = app.add_subcommand("serve", "load a model once and serve HTTP requests (docs/serving.md)");
  commands.emplace_back(serve, sd_cli::add_serve(*serve));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (verbose) sd::set_log_level(sd::LogLevel::kDebug);
  auto report = [verbose](const char* kind, const std::exception& e) {
    std::string message = e.what();
    // One line: c10::Error appends a C++ backtrace, and a few of libsd's errors list details below.
    if (auto nl = message.find('\n'); nl != std::string::npos && !verbose) {
      message.resize(nl);
      message += " (more with --verbose)";
    }
    std::fprintf(stderr, "%s: %s\n", kind, message.c_str());
  };
  try {
    for (auto& [sub, run] : commands) {
      if (sub->parsed()) return run();
    }
    return 2;
  } catch (const sd_cli::UsageError& e) {
    report("usage error", e);
    return 2;
  } catch (const std::exception& e) {
    report("error", e);
    return 1;
  }
}
