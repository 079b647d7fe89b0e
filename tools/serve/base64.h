#pragma once
// Base64 (RFC 4648, with padding), for images in JSON bodies.
#include <string>

namespace sd_serve {

std::string base64_encode(const std::string& bytes);
// False on a character outside the alphabet or a bad length; whitespace is skipped.
bool base64_decode(const std::string& text, std::string& bytes);

}  // namespace sd_serve
