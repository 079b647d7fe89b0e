#include "tool.h"

#include <cstdio>

#include "options.h"
#include "sd/error.h"

namespace sd_bench {

bool is_out_of_memory(const std::exception& error) {
  return dynamic_cast<const sd::OutOfMemoryError*>(&error) != nullptr;
}

std::string without_backtrace(const std::string& message) {
  auto out = message;
  if (auto nl = out.find("\nException raised from"); nl != std::string::npos) out.resize(nl);
  return out;
}

void Progress::operator()(const std::string& message) const {
  if (quiet_) return;
  std::fprintf(stderr, "[%s] %s\n", tool_.c_str(), message.c_str());
  std::fflush(stderr);
}

bool guarded(const std::string& what, std::vector<std::string>* failures, const std::function<void()>& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    const std::string message = what + ": " + without_backtrace(e.what());
    std::fprintf(stderr, "error: %s\n", message.c_str());
    failures->push_back(message);
    return false;
  }
}

int report_failures(const std::vector<std::string>& failures) {
  if (failures.empty()) return 0;
  std::fprintf(stderr, "%zu configuration(s) failed:\n", failures.size());
  for (const auto& f : failures) std::fprintf(stderr, "  %s\n", f.c_str());
  return 1;
}

int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  bool verbose = false;
  app.add_flag("--verbose", verbose, "on errors, the full message (LibTorch's C++ backtrace included)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  // One line unless --verbose: LibTorch's messages carry a backtrace after their first line.
  auto shown = [verbose](const std::exception& e) {
    std::string message = e.what();
    if (auto nl = message.find('\n'); nl != std::string::npos && !verbose) message.resize(nl);
    return message;
  };
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "usage error: %s\n", shown(e).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", shown(e).c_str());
    return 1;
  }
}

}  // namespace sd_bench
