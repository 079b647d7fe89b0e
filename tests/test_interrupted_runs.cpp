// Interrupted runs lose nothing (issue 18): `sd generate` and `bench_latency` are killed with SIGKILL
// at random moments, over and over, on the tiny golden pipeline; after every kill each output that
// exists (PNG, JSON sidecar, latents, CSV and JSON rows) must parse and be complete, and the row
// files must hold either the old rows or the old rows plus the new run's, never fewer, never half.
// Bounded by LIBSD_KILL_SECONDS (default 30).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "cli_run.h"
#include "golden.h"
#include "sd/image.h"
#include "sd/safetensors.h"

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Starts `argv` with its output discarded; returns its pid.
// Everything the child needs is made before fork(): between fork and exec only async-signal-safe
// calls (this process may have other threads holding malloc's lock).
pid_t spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  return pid;
}

// Waits for `pid`; true if SIGKILL ended it (false: it finished first).
bool reap(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGKILL;
  INFO("exit status " << WEXITSTATUS(status));
  CHECK(WEXITSTATUS(status) == 0);  // a run that finished must have succeeded
  return false;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Fields per record of a CSV text (quotes respected); -1 for a record with another count than the
// header, or text that does not end in a newline.
int64_t csv_rows(const std::string& text) {
  if (text.empty() || text.back() != '\n') return -1;
  std::vector<size_t> fields;
  size_t count = 1;
  bool quoted = false;
  for (char c : text) {
    if (c == '"') quoted = !quoted;
    if (quoted) continue;
    if (c == ',') ++count;
    if (c == '\n') {
      fields.push_back(count);
      count = 1;
    }
  }
  for (size_t f : fields) {
    if (f != fields.front()) return -1;
  }
  return static_cast<int64_t>(fields.size()) - 1;
}

struct Outputs {
  fs::path png, sidecar, latents, csv, rows_json;
};

// Checks every output that exists; returns the CSV's and the JSON array's row counts (-1 if absent).
std::pair<int64_t, int64_t> check_outputs(const Outputs& o, int64_t* files_checked) {
  if (fs::exists(o.png)) {
    sd::Image image = sd::read_image(o.png);  // throws on a truncated PNG
    CHECK(image.width == 64);
    CHECK(image.height == 64);
    ++*files_checked;
  }
  if (fs::exists(o.sidecar)) {
    const auto sidecar = nlohmann::json::parse(read_all(o.sidecar));
    CHECK(sidecar["images"].size() == 1);
    CHECK(sidecar.contains("timings_s"));
    ++*files_checked;
  }
  if (fs::exists(o.latents)) {
    sd::SafetensorsFile latents(o.latents);
    CHECK(latents.contains("final"));
    ++*files_checked;
  }
  int64_t csv = -1, rows = -1;
  if (fs::exists(o.csv)) {
    csv = csv_rows(read_all(o.csv));
    CHECK(csv >= 1);
    ++*files_checked;
  }
  if (fs::exists(o.rows_json)) {
    const auto array = nlohmann::json::parse(read_all(o.rows_json));
    REQUIRE(array.is_array());
    rows = static_cast<int64_t>(array.size());
    ++*files_checked;
  }
  return {csv, rows};
}

}  // namespace

TEST_CASE("killing sd generate and bench_latency at random moments leaves every output old or complete",
          "[cli][interrupted]") {
  const char* env = std::getenv("LIBSD_KILL_SECONDS");
  const double budget_s = env != nullptr ? std::atof(env) : 30.0;
  const fs::path dir = cli::temp_dir() / "interrupted";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string tiny = (golden::dir() / "pipelines/sd1_tiny").string();
  const Outputs o{dir / "out.png", dir / "out.json", dir / "latents.safetensors", dir / "rows.csv", dir / "rows.json"};
  const std::vector<std::string> generate{LIBSD_BINARY_DIR "/tools/sd", "generate", "--model", tiny, "--prompt",
                                          "a fox", "--steps", "2", "--height", "64", "--width", "64", "--threads",
                                          "1", "-q", "--save-latents", o.latents.string(), "-o", o.png.string()};
  const std::vector<std::string> bench{LIBSD_BINARY_DIR "/bench/bench_latency", "--model", tiny, "--height", "64",
                                       "--width", "64", "--steps", "1", "--batch", "1", "--warmup", "0",
                                       "--repeats", "1", "--precision", "fp32", "--threads", "1", "--quiet",
                                       "--csv", o.csv.string(), "--json", o.rows_json.string()};

  // One whole run of each: its duration sets the range of kill times, and its files are the "old" ones.
  auto timed = [](const std::vector<std::string>& argv) {
    const auto start = Clock::now();
    CHECK_FALSE(reap(spawn(argv)));
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  const double generate_s = timed(generate), bench_s = timed(bench);
  int64_t files_checked = 0;
  auto [csv_rows_before, json_rows_before] = check_outputs(o, &files_checked);
  REQUIRE(csv_rows_before == 1);
  REQUIRE(json_rows_before == 1);

  std::mt19937 rng(18);
  int kills = 0, finished = 0, generate_runs = 0, bench_runs = 0;
  const auto deadline = Clock::now() + std::chrono::duration<double>(budget_s);
  while (Clock::now() < deadline) {
    const bool use_bench = std::uniform_int_distribution<int>(0, 2)(rng) == 0;
    const double span = 1.1 * (use_bench ? bench_s : generate_s);
    const double delay = std::uniform_real_distribution<double>(0.0, span)(rng);
    const pid_t pid = spawn(use_bench ? bench : generate);
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    ::kill(pid, SIGKILL);
    (reap(pid) ? kills : finished) += 1;
    (use_bench ? bench_runs : generate_runs) += 1;
    const auto [csv_rows_now, json_rows_now] = check_outputs(o, &files_checked);
    // The row files: the old rows, or the old rows and this run's one.
    CHECK((csv_rows_now == csv_rows_before || (use_bench && csv_rows_now == csv_rows_before + 1)));
    CHECK((json_rows_now == json_rows_before || (use_bench && json_rows_now == json_rows_before + 1)));
    csv_rows_before = csv_rows_now;
    json_rows_before = json_rows_now;
  }
  // What an interrupted write leaves besides the outputs: its temporary file, never the output itself.
  int leftovers = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().string().find(".tmp.") != std::string::npos) ++leftovers;
  }
  std::printf("interrupted runs: %d killed, %d finished first (%d sd generate, %d bench_latency), %lld output "
              "checks passed, %d temporary files left by killed writes, %lld rows appended\n",
              kills, finished, generate_runs, bench_runs, static_cast<long long>(files_checked), leftovers,
              static_cast<long long>(csv_rows_before));
  std::fflush(stdout);
  CHECK(kills >= 5);
}
