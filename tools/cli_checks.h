#pragma once
// Argument checks CLI11 does not have, shared by `sd` and the benchmark tools so that both refuse
// the same values with exit code 2: CLI11 reads an unsigned option with strtoull, which takes "-1"
// as 2^64 - 1, "99999999999999999999" as 2^64 - 1 and "010" as octal 8; and "nan" is a double.
#include <CLI/CLI.hpp>

#include <cmath>
#include <string>

namespace sd_cli_checks {

// Decimal digits within 64 bits; leading zeros dropped (so CLI11 cannot read them as octal): use
// it with Option::transform(), which keeps the rewritten text (check() discards it).
inline CLI::Validator seed() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::string max = "18446744073709551615";
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
          return "expected a seed from 0 to " + max + ", got '" + text + "'";
        }
        const auto first = text.find_first_not_of('0');
        const std::string value = first == std::string::npos ? "0" : text.substr(first);
        if (value.size() > max.size() || (value.size() == max.size() && value > max)) {
          return "seed " + text + " does not fit in 64 bits (at most " + max + ")";
        }
        text = value;
        return {};
      },
      "SEED");
}

inline CLI::Validator finite() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(text, &used);
          if (used == text.size() && std::isfinite(v)) return {};
        } catch (const std::exception&) {
        }
        return "expected a finite number, got '" + text + "'";
      },
      "FINITE");
}

inline CLI::Validator finite_non_negative() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(text, &used);
          if (used == text.size() && std::isfinite(v) && v >= 0) return {};
        } catch (const std::exception&) {
        }
        return "expected a finite number >= 0, got '" + text + "'";
      },
      "FINITE >= 0");
}

inline CLI::Validator positive_multiple_of_8() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        long long v = 0;
        try {
          size_t used = 0;
          v = std::stoll(text, &used);
          if (used != text.size()) return "expected a positive multiple of 8, got '" + text + "'";
        } catch (const std::exception&) {
          return "expected a positive multiple of 8, got '" + text + "'";
        }
        return v > 0 && v % 8 == 0 ? std::string() : "expected a positive multiple of 8, got " + text;
      },
      "MULTIPLE OF 8");
}

}  // namespace sd_cli_checks
