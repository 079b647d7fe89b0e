#pragma once
// A check of a JPEG's marker segments before stb_image sees them. stb_image 2.27 (Debian 12's
// libstb) builds its Huffman tables from a DHT segment's 16 code-length counts without checking
// that they add up to at most 256 symbols: a crafted file with larger counts writes past the
// tables (found by tests/fuzz/fuzz_image). This walks the segments the way stb_image's reader
// does (resynchronizing on 0xFF bytes) so that it sees every DHT table stb_image would build, and
// checks that every scan decodes with Huffman tables the file defined: stb_image 2.27 decodes with
// an undefined table's uninitialized memory and indexes out of bounds with it.
#include <cstddef>
#include <string>

namespace sd {

// Empty if nothing stb_image would mishandle was found; otherwise what is wrong, for an error message.
std::string jpeg_structure_problem(const unsigned char* data, size_t size);

}  // namespace sd
