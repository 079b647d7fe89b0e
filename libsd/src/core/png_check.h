#pragma once
// A check of a PNG's chunk lengths before stb_image sees them. stb_image 2.27 grows its buffer for
// the compressed data to whatever an IDAT chunk's length field says before reading the chunk: a
// 100-byte file claiming a 2 GB chunk made it allocate 2 GB (found by tests/fuzz/fuzz_image).
// Every chunk up to IEND must fit in the bytes the file has.
#include <cstddef>
#include <string>

namespace sd {

// Empty if every chunk fits in the file; otherwise what is wrong, for an error message.
// `data` starts with the 8-byte PNG signature.
std::string png_structure_problem(const unsigned char* data, size_t size);

}  // namespace sd
