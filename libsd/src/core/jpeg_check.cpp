#include "core/jpeg_check.h"

#include <cstdint>

namespace sd {
namespace {

constexpr unsigned char kMarkerPrefix = 0xFF;
constexpr unsigned char kSOI = 0xD8, kEOI = 0xD9, kSOS = 0xDA, kDHT = 0xC4, kTEM = 0x01;
constexpr unsigned char kSOFBaseline = 0xC0, kSOFExtended = 0xC1, kSOFProgressive = 0xC2;
constexpr int kMaxHuffmanSymbols = 256;  // JPEG: one table codes at most 256 byte values

bool is_restart(unsigned char m) { return m >= 0xD0 && m <= 0xD7; }

class Reader {
 public:
  Reader(const unsigned char* data, size_t size) : data_(data), size_(size) {}
  bool at_end() const { return pos_ >= size_; }
  size_t pos() const { return pos_; }
  void seek(size_t pos) { pos_ = pos; }
  // Like stb_image's reader: past the end, bytes read as 0.
  unsigned char get8() { return pos_ < size_ ? data_[pos_++] : (pos_++, 0); }
  int get16be() {
    const int hi = get8();
    return (hi << 8) | get8();
  }
  // The next marker at or after the current position (skipping anything that is not one, and 0xFF
  // fill bytes); -1 at the end of the data.
  int next_marker() {
    while (pos_ < size_) {
      if (data_[pos_++] != kMarkerPrefix) continue;
      while (pos_ < size_ && data_[pos_] == kMarkerPrefix) ++pos_;
      if (pos_ >= size_) return -1;
      const unsigned char m = data_[pos_++];
      if (m != 0x00) return m;  // 0xFF 0x00 is a stuffed data byte, not a marker
    }
    return -1;
  }

 private:
  const unsigned char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Which Huffman tables the file has defined so far: stb_image decodes a scan with whatever memory
// an undefined table's slot holds (uninitialized: it then indexes its tables with garbage).
struct DefinedTables {
  bool dc[4] = {false, false, false, false};
  bool ac[4] = {false, false, false, false};
};

// The tables of one DHT segment, read as stb_image reads them (including past the segment's end
// when the counts say so). Returns the problem, or "" when stb_image can build them safely.
std::string check_dht(Reader& in, DefinedTables& defined) {
  const size_t segment_start = in.pos();
  int remaining = in.get16be() - 2;
  while (remaining > 0) {
    const unsigned char table = in.get8();
    if ((table >> 4) > 1 || (table & 15) > 3) return "";  // stb_image refuses the table itself
    int symbols = 0;
    for (int i = 0; i < 16; ++i) symbols += in.get8();
    if (symbols > kMaxHuffmanSymbols) {
      return "a Huffman table at byte " + std::to_string(segment_start - 2) + " has " + std::to_string(symbols) +
             " codes, at most " + std::to_string(kMaxHuffmanSymbols);
    }
    (table >> 4 ? defined.ac : defined.dc)[table & 15] = true;
    in.seek(in.pos() + static_cast<size_t>(symbols));
    remaining -= 17 + symbols;
  }
  return "";
}

// A scan header (SOS): every Huffman table the scan decodes with must have been defined. Which ones
// it uses follows stb_image's decoder: baseline scans both; progressive DC first scans (Ss = 0,
// Ah = 0) the DC tables, DC refinement scans none, AC scans (Ss > 0) the AC tables.
std::string check_sos(Reader& in, bool progressive, const DefinedTables& defined) {
  const size_t start = in.pos();
  const int length = in.get16be();
  const int components = in.get8();
  if (components < 1 || components > 4) return "";  // stb_image refuses the scan header
  int selectors[4];
  for (int i = 0; i < components; ++i) {
    (void)in.get8();  // component id
    selectors[i] = in.get8();
  }
  const int spectral_start = in.get8();
  (void)in.get8();  // spectral end
  const int approximation_high = in.get8() >> 4;
  const bool uses_dc = !progressive || (spectral_start == 0 && approximation_high == 0);
  const bool uses_ac = !progressive || spectral_start != 0;
  for (int i = 0; i < components; ++i) {
    const int dc = selectors[i] >> 4, ac = selectors[i] & 15;
    if (dc > 3 || ac > 3) return "";  // refused by stb_image
    if ((uses_dc && !defined.dc[dc]) || (uses_ac && !defined.ac[ac])) {
      return "the scan at byte " + std::to_string(start - 2) + " uses a Huffman table (" +
             (uses_dc && !defined.dc[dc] ? "DC " + std::to_string(dc) : "AC " + std::to_string(ac)) +
             ") that the file does not define before it";
    }
  }
  if (length >= 2) in.seek(start + static_cast<size_t>(length));
  return "";
}

}  // namespace

std::string jpeg_structure_problem(const unsigned char* data, size_t size) {
  Reader in(data, size);
  DefinedTables defined;
  bool progressive = false;
  while (!in.at_end()) {
    const int marker = in.next_marker();
    if (marker < 0 || marker == kEOI) break;
    if (marker == kSOI || marker == kTEM || is_restart(static_cast<unsigned char>(marker))) continue;  // no length
    if (marker == kDHT || marker == kSOS) {
      std::string problem = marker == kDHT ? check_dht(in, defined) : check_sos(in, progressive, defined);
      if (!problem.empty()) return problem;
      continue;  // next_marker resynchronizes wherever the segment ended
    }
    if (marker == kSOFBaseline || marker == kSOFExtended || marker == kSOFProgressive) {
      progressive = marker == kSOFProgressive;
    }
    // Any other segment: skip its length. After a scan header (SOS) the entropy-coded data follows;
    // next_marker skips it (its 0xFF bytes are stuffed as 0xFF 0x00, restart markers are skipped).
    const size_t start = in.pos();
    const int length = in.get16be();
    if (length < 2) continue;  // stb_image refuses it; rescan rather than guess
    in.seek(start + static_cast<size_t>(length));
  }
  return "";
}

}  // namespace sd
