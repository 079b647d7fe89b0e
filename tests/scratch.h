#pragma once
// Small helpers of tests that write files and check errors: a temporary folder that removes
// itself, and the message of the sd::Error a call throws.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "sd/error.h"

namespace scratch {

// <tmp>/libsd_test_<owner>_<pid>_<name>, fresh, removed with the object.
struct Dir {
  std::filesystem::path path;
  Dir(const std::string& owner, const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("libsd_test_" + owner + "_" + std::to_string(::getpid()) + "_" + name)) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
};

// The message of the sd::Error that `f` throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sd::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace scratch
