#pragma once
// Running the `sd` binary from a test as a person would: its exit code, stdout and stderr.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace cli {

struct Run {
  int code;
  std::string out, err;
};

// A folder of this test process under the system's temporary directory.
inline std::filesystem::path temp_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("libsd-cli-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `args` is pasted into a shell command line: quote paths with '...'.
inline Run run_sd(const std::string& args) {
  const auto out = temp_dir() / "stdout.txt", err = temp_dir() / "stderr.txt";
  const std::string command = std::string("'" LIBSD_BINARY_DIR "/tools/sd' ") + args + " > '" + out.string() +
                              "' 2> '" + err.string() + "' < /dev/null";
  const int status = std::system(command.c_str());
  Run r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  UNSCOPED_INFO("$ sd " << args << "\n-> " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
  return r;
}

}  // namespace cli
