#include "sd/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>
#include <system_error>

#include "sd/error.h"

namespace sd {

void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  static std::atomic<unsigned> counter{0};
  SD_CHECK(!path.empty(), "write_file_atomic: empty path");
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      SD_CHECK(out.is_open(), path.string(), ": cannot open '", tmp.string(), "' for writing");
      write(out);
      out.flush();
      SD_CHECK(out.good(), path.string(), ": write failed (disk full?)");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    SD_CHECK(!ec, path.string(), ": cannot rename the temporary file into place: ", ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

}  // namespace sd
