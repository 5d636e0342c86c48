// Goal: docs/api.md cannot rot. Every `sh` block of it runs, in order, in
// one bash session against a real cluster (three coordinators, a
// PostgreSQL agent "bank-a", a SQLite agent "bank-b", tables "accounts");
// a block that fails, or whose "# expect: <text>" is not in its output,
// fails the test.
#include <fstream>
#include <sstream>

#include "tests/integration/cluster_fixture.h"

#ifndef DTX_SOURCE_DIR
#error "DTX_SOURCE_DIR must name the source tree"
#endif

namespace dtx::testing {
namespace {

struct Block {
  int line = 0;
  std::string code;
  std::vector<std::string> expects;
};

std::vector<Block> sh_blocks(const std::string& path) {
  std::ifstream in(path);
  std::vector<Block> out;
  std::string line;
  int n = 0;
  bool inside = false;
  Block cur;
  while (std::getline(in, line)) {
    ++n;
    if (!inside && line == "```sh") {
      inside = true;
      cur = Block{n + 1, "", {}};
      continue;
    }
    if (inside && line == "```") {
      inside = false;
      out.push_back(cur);
      continue;
    }
    if (!inside) continue;
    const std::string marker = "# expect: ";
    if (line.rfind(marker, 0) == 0) cur.expects.push_back(line.substr(marker.size()));
    cur.code += line + "\n";
  }
  return out;
}

TEST(ApiDocs, every_curl_example_runs_against_a_real_cluster) {
  const std::string doc = std::string(DTX_SOURCE_DIR) + "/docs/api.md";
  const std::vector<Block> blocks = sh_blocks(doc);
  ASSERT_GE(blocks.size(), 10u) << "docs/api.md lost its examples";

  LocalCluster::Options o;
  o.pg_name = "bank-a";
  o.sqlite_name = "bank-b";
  o.pg_table = "accounts";
  LocalCluster c(o);
  c.start();
  const int leader = c.wait_leader();

  std::string script = "set -euo pipefail\n";
  script += "export DTX=http://" + c.api(leader) + "\n";
  script += std::string("export TOKEN=") + LocalCluster::kClientToken + "\n";
  script += std::string("export CLUSTER_TOKEN=") + LocalCluster::kClusterToken + "\n";
  for (size_t i = 0; i < blocks.size(); ++i) {
    script += "echo; echo '@@block " + std::to_string(i) + "'\n" + blocks[i].code;
  }
  script += "echo; echo '@@end'\n";
  const std::string path = c.dir() + "/api-doc.sh";
  std::ofstream(path) << script;
  Process p = Process::spawn("/bin/bash", {path}, c.dir() + "/api-doc.out");
  auto status = p.wait(std::chrono::seconds(120));
  const std::string out = p.log();

  // Split the output by block.
  std::vector<std::string> outputs(blocks.size());
  int current = -1;
  bool ended = false;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("@@block ", 0) == 0) {
      current = std::stoi(line.substr(8));
      continue;
    }
    if (line == "@@end") {
      ended = true;
      continue;
    }
    if (current >= 0) outputs[current] += line + "\n";
  }
  ASSERT_TRUE(status.has_value()) << "the examples did not finish:\n" << out;
  if (!ended) {
    ADD_FAILURE() << "docs/api.md: the block at line " << blocks[std::max(current, 0)].line
                  << " failed:\n"
                  << blocks[std::max(current, 0)].code << "---- output:\n"
                  << outputs[std::max(current, 0)];
    return;
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (const std::string& e : blocks[i].expects) {
      EXPECT_NE(outputs[i].find(e), std::string::npos)
          << "docs/api.md line " << blocks[i].line << ": expected '" << e << "' in:\n"
          << outputs[i];
    }
  }
  // The documented transfer really happened, in the databases themselves.
  EXPECT_EQ(c.pg_balance(1), 995);
  EXPECT_TRUE(LocalCluster::eventually([&] { return c.sqlite_balance(1) == 1005; }));
  EXPECT_EQ(c.sqlite_balance(2), 1000) << "the aborted DELETE left the row";
}

}  // namespace
}  // namespace dtx::testing
