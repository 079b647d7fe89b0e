#pragma once
// Files that are either complete or absent: everything libsd and its tools write goes through here.
#include <filesystem>
#include <functional>
#include <ostream>
#include <string_view>

#include "sd/export.h"

namespace sd {

// Calls `write` with a stream to a temporary file in the same folder, flushes and closes it, then
// renames it over `path`. If `write` throws or the stream fails, the temporary file is removed and
// `path` is left untouched; the error names `path`.
SD_API void write_file_atomic(const std::filesystem::path& path,
                              const std::function<void(std::ostream&)>& write);
SD_API void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

}  // namespace sd
