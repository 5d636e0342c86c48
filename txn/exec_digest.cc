#include "txn/exec_digest.h"

#include <cstring>

#include "common/crc32c.h"

namespace dtx::txn {

namespace {

// Folds bytes into a 64-bit digest made of two CRC-32C lanes.
uint64_t fold(uint64_t d, const void* p, size_t n) {
  const uint32_t lo = crc32c(p, n, static_cast<uint32_t>(d));
  const uint32_t hi = crc32c(p, n, static_cast<uint32_t>(d >> 32) ^ 0x9e3779b9u);
  return (uint64_t{hi} << 32) | lo;
}

uint64_t fold_u64(uint64_t d, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i)
    b[i] = static_cast<uint8_t>(v >> (8 * i));
  return fold(d, b, 8);
}

}  // namespace

uint64_t exec_digest(uint64_t d, uint64_t seq, std::string_view sql,
                     const std::vector<SqlValue>& params) {
  d = fold_u64(d, seq);
  d = fold_u64(d, sql.size());
  d = fold(d, sql.data(), sql.size());
  d = fold_u64(d, params.size());
  for (const SqlValue& v : params) {
    d = fold_u64(d, v.index());
    if (const bool* b = std::get_if<bool>(&v)) d = fold_u64(d, *b ? 1 : 0);
    if (const int64_t* i = std::get_if<int64_t>(&v)) d = fold_u64(d, static_cast<uint64_t>(*i));
    if (const double* f = std::get_if<double>(&v)) {
      uint64_t bits;
      std::memcpy(&bits, f, 8);
      d = fold_u64(d, bits);
    }
    if (const std::string* s = std::get_if<std::string>(&v)) {
      d = fold_u64(d, s->size());
      d = fold(d, s->data(), s->size());
    }
  }
  return d;
}

std::string digest_hex(uint64_t digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i) {
    s[static_cast<size_t>(i)] = kHex[digest & 0xf];
    digest >>= 4;
  }
  return s;
}

std::optional<uint64_t> parse_digest_hex(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : hex) {
    int n;
    if (c >= '0' && c <= '9') {
      n = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      n = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      n = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(n);
  }
  return v;
}

}  // namespace dtx::txn
