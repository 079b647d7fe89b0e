#pragma once
// A `sd serve` child process for tests: started on 127.0.0.1 with --port 0 (a free port, read back
// from its first line of stdout), killed when the test ends however it ends.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../cli_run.h"

namespace serve_test {

// The test process's temporary folder and whole-file reads, as the CLI tests have them.
using cli::slurp;
using cli::temp_dir;

inline std::string slurp_binary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string tiny_model() { return LIBSD_GOLDEN_DIR "/pipelines/sd1_tiny"; }

class ServeProcess {
 public:
  // `args` after `sd serve --host 127.0.0.1 --port 0`. Waits up to `start_timeout` for the port.
  explicit ServeProcess(const std::vector<std::string>& args, const std::string& name = "server",
                        std::chrono::seconds start_timeout = std::chrono::seconds(120)) {
    // A name of its own per server: a file left by an earlier one must not be read as this one's.
    static int started = 0;
    const std::string stem = name + "-" + std::to_string(++started);
    out_ = temp_dir() / (stem + ".out");
    err_ = temp_dir() / (stem + ".err");
    std::fflush(stdout);  // or the child would print the parent's buffered output again
    std::fflush(stderr);
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<std::string> argv{LIBSD_BINARY_DIR "/tools/sd", "serve", "--host", "127.0.0.1", "--port", "0"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> cargv;
      for (auto& s : argv) cargv.push_back(s.data());
      cargv.push_back(nullptr);
      if (!std::freopen(out_.c_str(), "w", stdout) || !std::freopen(err_.c_str(), "w", stderr)) ::_exit(127);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + start_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string out = slurp(out_);
      const auto at = out.find("http://127.0.0.1:");
      if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
        port_ = std::stoi(out.substr(at + 17));
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServeProcess() {
    if (!exited_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return slurp(err_); }
  // Sends `signal` and waits up to `timeout` for the exit; the exit code, or -1 (killed: too late).
  int stop(int signal, std::chrono::seconds timeout) {
    if (exited_) return exit_code_;
    ::kill(pid_, signal);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    exited_ = true;
    return -1;
  }

 private:
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
};

}  // namespace serve_test
