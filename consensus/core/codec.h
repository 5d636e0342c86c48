// Byte writer and bounds-checked reader for dtx's binary formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "common/bytes.h"

namespace dtx::consensus {

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    char b[4];
    put_u32(reinterpret_cast<uint8_t*>(b), v);
    out_.append(b, 4);
  }
  void u64(uint64_t v) {
    char b[8];
    put_u64(reinterpret_cast<uint8_t*>(b), v);
    out_.append(b, 8);
  }
  void bytes(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }
  std::string& buffer() { return out_; }

 private:
  std::string out_;
};

// Every read checks the remaining length; after the first failure ok() is
// false and further reads return zeros.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  explicit Reader(std::string_view in)
      : in_(reinterpret_cast<const uint8_t*>(in.data()), in.size()) {}

  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

  uint8_t u8() {
    if (!need(1)) return 0;
    return in_[pos_++];
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = get_u32(in_.data() + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    uint64_t v = get_u64(in_.data() + pos_);
    pos_ += 8;
    return v;
  }
  std::string bytes() {
    uint32_t n = u32();
    if (!need(n)) return {};
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // A count of elements each at least min_element_bytes long: bounded by
  // what is left, so a forged count cannot make the caller allocate.
  uint32_t count(size_t min_element_bytes) {
    uint32_t n = u32();
    if (min_element_bytes > 0 && n > remaining() / min_element_bytes) ok_ = false;
    return ok_ ? n : 0;
  }
  void fail() { ok_ = false; }

 private:
  bool need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace dtx::consensus
