// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
// checksum of every WAL record, batch and segment header and every frame on
// the wire.
//
// crc32c() uses the SSE4.2 crc32 instruction when the CPU has it and a
// slicing-by-8 table otherwise; crc32c_portable() is always the table and is
// the reference the hardware path is tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dtx {

// Extends crc (the CRC-32C of some prefix; 0 for none) with n more bytes, so
// crc32c(b, crc32c(a)) == crc32c(a || b).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);
bool crc32c_hardware_available();

inline uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc = 0) {
  return crc32c(bytes.data(), bytes.size(), crc);
}
inline uint32_t crc32c(std::string_view s, uint32_t crc = 0) {
  return crc32c(s.data(), s.size(), crc);
}

}  // namespace dtx
