// Goal: the shared vocabulary in common/ behaves as its headers promise.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/status.h"
#include "tests/support/temp_dir.h"

namespace dtx {
namespace {

TEST(Crc32c, known_vectors) {
  EXPECT_EQ(crc32c(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_portable("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string_view("")), 0u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
}

TEST(Crc32c, hardware_path_matches_table_reference) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> buf(4096 + 16);
  for (auto& b : buf)
    b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len = 0; len < 300; ++len) {
      ASSERT_EQ(crc32c(buf.data() + align, len), crc32c_portable(buf.data() + align, len))
          << "align " << align << " len " << len;
    }
    ASSERT_EQ(crc32c(buf.data() + align, 4096), crc32c_portable(buf.data() + align, 4096));
  }
  RecordProperty("hardware", crc32c_hardware_available() ? "sse4.2" : "none");
}

TEST(Crc32c, extends_across_pieces) {
  const std::string a = "distributed ", b = "transactions";
  EXPECT_EQ(crc32c(b, crc32c(a)), crc32c(a + b));
  EXPECT_EQ(crc32c_portable(b.data(), b.size(), crc32c_portable(a.data(), a.size())),
            crc32c(a + b));
}

TEST(Status, result_holds_value_or_error) {
  Result<int> good = 5;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 5);
  Result<int> bad = error(Code::not_found, "no txid 7");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::not_found);
  EXPECT_EQ(bad.status().describe(), "not_found: no txid 7");
  EXPECT_TRUE(good.status().ok());
}

TEST(ManualTimer, fires_in_deadline_order_only_when_time_moves) {
  ManualClock clock(1000);
  ManualTimer timer(clock);
  std::vector<int> fired;
  timer.arm(300, [&] { fired.push_back(3); });
  timer.arm(100, [&] { fired.push_back(1); });
  TimerId two = timer.arm(200, [&] { fired.push_back(2); });
  timer.arm(100, [&] { fired.push_back(11); });  // same deadline: arm order
  EXPECT_TRUE(fired.empty());
  timer.advance_ns(150);
  EXPECT_EQ(fired, (std::vector<int>{1, 11}));
  EXPECT_EQ(clock.now_ns(), 1150);
  EXPECT_TRUE(timer.cancel(two));
  EXPECT_FALSE(timer.cancel(two));
  timer.advance_ns(1000);
  EXPECT_EQ(fired, (std::vector<int>{1, 11, 3}));
  EXPECT_EQ(timer.pending(), 0u);
}

TEST(ManualTimer, callback_sees_its_own_deadline_and_can_rearm) {
  ManualClock clock;
  ManualTimer timer(clock);
  std::vector<int64_t> at;
  std::function<void()> tick = [&] {
    at.push_back(clock.now_ns());
    if (at.size() < 3) timer.arm(10, tick);
  };
  timer.arm(10, tick);
  timer.advance_ns(100);
  EXPECT_EQ(at, (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(clock.now_ns(), 100);
}

TEST(ThreadTimer, runs_a_callback_and_honours_cancel) {
  ThreadTimer timer;
  std::promise<int64_t> fired;
  const int64_t start = timer.clock().now_ns();
  timer.arm(2'000'000, [&] { fired.set_value(timer.clock().now_ns()); });
  TimerId never = timer.arm(1'000'000, [] { FAIL() << "cancelled timer ran"; });
  EXPECT_TRUE(timer.cancel(never));
  auto f = fired.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_GE(f.get() - start, 2'000'000);
}

TEST(Logging, parses_levels_and_rejects_unknown_ones) {
  EXPECT_EQ(*logging::parse_level("debug"), spdlog::level::debug);
  EXPECT_EQ(*logging::parse_level("warn"), spdlog::level::warn);
  auto bad = logging::parse_level("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("trace, debug"), std::string::npos);
  EXPECT_FALSE(logging::setup("test", "loud").ok());
  EXPECT_TRUE(logging::setup("test", "warn").ok());
}

TEST(PosixFileSystem, second_lock_on_a_path_is_refused) {
  testing::TempDir dir;
  FileSystem& fs = posix_file_system();
  auto first = fs.lock(dir.sub("LOCK"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = fs.lock(dir.sub("LOCK"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::busy);
  first->reset();
  EXPECT_TRUE(fs.lock(dir.sub("LOCK")).ok());
}

}  // namespace
}  // namespace dtx
