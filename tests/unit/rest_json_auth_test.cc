// Goal: the JSON helper enforces its limits and names the offending field;
// TokenAuth loads tokens only from files and the environment, rejects bad
// ones, and tells a missing credential from a wrong one.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "rest/auth.h"
#include "rest/json.h"
#include "tests/support/temp_dir.h"

namespace dtx::rest {
namespace {

TEST(ParseJson, accepts_documents_within_limits) {
  auto doc = parse_json(R"( {"sql": "SELECT 1", "params": [1, "x", null], "n": 5} )");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(get_string(*doc, "sql").value(), "SELECT 1");
  EXPECT_EQ(get_array(*doc, "params").value()->size(), 3u);
  EXPECT_EQ(get_int64(*doc, "n").value(), 5);
}

TEST(ParseJson, rejects_malformed_with_offset) {
  auto doc = parse_json(R"({"a": 1,})");
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), Code::invalid_argument);
  EXPECT_NE(doc.status().message().find("invalid JSON at offset"), std::string::npos)
      << doc.status();
  EXPECT_FALSE(parse_json("").ok());
  EXPECT_FALSE(parse_json("{} {}").ok()) << "trailing data";
  EXPECT_FALSE(parse_json("// c\n{}").ok()) << "no comments";
  EXPECT_FALSE(parse_json("\"\xff\"").ok()) << "invalid UTF-8";
  EXPECT_TRUE(parse_json("{}\n").ok()) << "trailing whitespace is fine";
  // Beyond a double's range: Boost.JSON would make it infinity and write it
  // back as `Infinity`, which no JSON reader accepts.
  EXPECT_FALSE(parse_json(R"({"a": [1, {"b": -1.5e3002}]})").ok());
  EXPECT_TRUE(parse_json(R"({"a": [1, {"b": -1.5e300}]})").ok());
}

TEST(ParseJson, enforces_size_limit) {
  JsonLimits limits;
  limits.bytes_max = 16;
  EXPECT_TRUE(parse_json(R"({"a": "0123"})", limits).ok());
  auto big = parse_json(R"({"a": "0123456789"})", limits);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("exceeds the limit of 16"), std::string::npos);
}

TEST(ParseJson, enforces_depth_limit) {
  JsonLimits limits;
  limits.depth_max = 4;
  EXPECT_TRUE(parse_json("[[[[1]]]]", limits).ok());
  EXPECT_FALSE(parse_json("[[[[[1]]]]]", limits).ok());
  // The default stops a stack-exhausting document.
  std::string deep(100'000, '[');
  EXPECT_FALSE(parse_json(deep).ok());
}

TEST(JsonFields, errors_name_the_field) {
  auto doc = parse_json(R"({"s": 5, "b": "yes", "n": 1.5, "big": 18446744073709551615,
                            "o": [], "a": {}, "nul": null})")
                 .value();
  EXPECT_EQ(get_string(doc, "s").status().message(), "field 's' must be a string, not an integer");
  EXPECT_EQ(get_bool(doc, "b").status().message(), "field 'b' must be a boolean, not a string");
  EXPECT_EQ(get_int64(doc, "n").status().message(), "field 'n' must be an integer, not a number");
  EXPECT_FALSE(get_int64(doc, "big").ok());
  EXPECT_EQ(get_object(doc, "o").status().message(), "field 'o' must be an object, not an array");
  EXPECT_EQ(get_array(doc, "a").status().message(), "field 'a' must be an array, not an object");
  EXPECT_EQ(get_string(doc, "missing").status().message(), "field 'missing' is required");
  EXPECT_EQ(get_string(doc, "nul").status().message(), "field 'nul' is required");
  EXPECT_EQ(get_string(doc, "s").status().code(), Code::invalid_argument);
}

TEST(JsonFields, optional_fields_and_ranges) {
  auto doc = parse_json(R"({"timeout_ms": 500, "protocol": "3pc", "flag": true})").value();
  EXPECT_EQ(get_int64_or(doc, "timeout_ms", 30000, 1, 600000).value(), 500);
  EXPECT_EQ(get_int64_or(doc, "absent", 30000, 1, 600000).value(), 30000);
  auto out = get_int64_or(doc, "timeout_ms", 0, 1000, 2000);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "field 'timeout_ms' must be between 1000 and 2000, not 500");
  EXPECT_EQ(get_string_or(doc, "protocol", "2pc").value(), "3pc");
  EXPECT_EQ(get_string_or(doc, "absent", "2pc").value(), "2pc");
  EXPECT_FALSE(get_string_or(doc, "timeout_ms", "x").ok()) << "present with the wrong type";
  EXPECT_TRUE(get_bool_or(doc, "flag", false).value());
  EXPECT_FALSE(get_bool_or(doc, "absent", false).value());
}

TEST(JsonFields, non_object_document_is_reported) {
  auto doc = parse_json("[1]").value();
  EXPECT_EQ(get_string(doc, "x").status().message(), "request body must be a JSON object");
  EXPECT_FALSE(as_object(doc).ok());
  EXPECT_TRUE(as_object(parse_json("{}").value()).ok());
}

constexpr const char* kToken = "s3cret-token-0123456789";
constexpr const char* kOther = "other-token-abcdefghij";

std::string write_file(const testing::TempDir& dir, const std::string& text) {
  std::string path = dir.sub("tokens");
  std::ofstream(path) << text;
  ::chmod(path.c_str(), 0600);
  return path;
}

TEST(TokenAuth, verdicts_for_missing_wrong_and_right) {
  auto auth = TokenAuth::from_tokens({kToken}).value();
  using V = TokenAuth::Verdict;
  EXPECT_EQ(auth.check(std::nullopt), V::missing);
  EXPECT_EQ(auth.check(std::string("Basic dXNlcjpwYXNz")), V::missing);
  EXPECT_EQ(auth.check(std::string("Bearer")), V::missing);
  EXPECT_EQ(auth.check(std::string("Bearer ") + kOther), V::wrong);
  EXPECT_EQ(auth.check(std::string("Bearer ") + kToken + "x"), V::wrong);
  EXPECT_EQ(auth.check(std::string("Bearer s3cret")), V::wrong) << "a prefix is not the token";
  EXPECT_EQ(auth.check(std::string("Bearer ") + kToken), V::ok);
  EXPECT_EQ(auth.check(std::string("bearer ") + kToken), V::ok) << "scheme is case-insensitive";
  std::string upper = kToken;
  upper[0] = 'S';
  EXPECT_EQ(auth.check("Bearer " + upper), V::wrong) << "the token is case-sensitive";
}

TEST(TokenAuth, from_file_reads_several_tokens_and_skips_comments) {
  testing::TempDir dir("dtx-rest-auth");
  std::string path =
      write_file(dir, std::string("# cluster tokens\n\n  ") + kToken + "  \n" + kOther + "\n");
  auto auth = TokenAuth::from_file(path);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->token_count(), 2u);
  EXPECT_EQ(auth->primary_token(), kToken);
  EXPECT_EQ(auth->check(std::string("Bearer ") + kOther), TokenAuth::Verdict::ok);
}

TEST(TokenAuth, from_file_refuses_missing_empty_and_malformed) {
  testing::TempDir dir("dtx-rest-auth");
  EXPECT_EQ(TokenAuth::from_file(dir.sub("absent")).status().code(), Code::not_found);
  EXPECT_EQ(TokenAuth::from_file(write_file(dir, "# nothing\n\n")).status().code(),
            Code::invalid_argument);
  EXPECT_EQ(TokenAuth::from_file(write_file(dir, "short\n")).status().code(),
            Code::invalid_argument);
  EXPECT_EQ(TokenAuth::from_file(write_file(dir, "has a space in it 0123456789\n")).status().code(),
            Code::invalid_argument);
}

TEST(TokenAuth, from_env) {
  const char* var = "DTX_REST_TEST_TOKEN";
  ::unsetenv(var);
  EXPECT_EQ(TokenAuth::from_env(var).status().code(), Code::not_found);
  ::setenv(var, (std::string(" ") + kToken + "\n").c_str(), 1);
  auto auth = TokenAuth::from_env(var);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->check(std::string("Bearer ") + kToken), TokenAuth::Verdict::ok);
  ::setenv(var, "tiny", 1);
  EXPECT_EQ(TokenAuth::from_env(var).status().code(), Code::invalid_argument);
  ::unsetenv(var);
}

TEST(TokenAuth, constant_time_equal_is_equality) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("ab", "abc"));
  EXPECT_FALSE(constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0", 2), "a"));
}

}  // namespace
}  // namespace dtx::rest
