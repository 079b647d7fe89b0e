#pragma once
// SHA-256 of files and bytes, in lowercase hex: what the JSON sidecars record to identify the
// inputs of a generation (init images, masks, weight files).
#include <cstddef>
#include <filesystem>
#include <string>

#include "sd/export.h"

namespace sd {

SD_API std::string sha256_hex(const void* data, size_t size);
// Reads the file in chunks (any size); an unreadable file is an sd::Error naming it.
SD_API std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace sd
