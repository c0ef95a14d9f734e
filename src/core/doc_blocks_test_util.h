// Test-only: the fenced code blocks of a document in the source tree, so a test can hold the
// docs' examples to the code (a documented config must parse, a documented plan must parse).
// Needs MANDATE_SOURCE_DIR, which cmake/modules.cmake defines for every module's tests.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

namespace mandate::core::testing {

struct DocBlock {
  int line = 0;      // 1-based line of the opening fence
  std::string text;  // the lines between the fences, each ending in '\n'
};

// The blocks of `repo_path` (relative to the source tree) opened with "```<lang>". A missing
// file or an unclosed block is a test failure (and gives what was read).
inline std::vector<DocBlock> FencedBlocks(const std::string& repo_path, const std::string& lang) {
  std::vector<DocBlock> blocks;
  const std::string path = std::string(MANDATE_SOURCE_DIR) + "/" + repo_path;
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  const std::string open = "```" + lang;
  std::string line;
  bool inside = false;
  bool wanted = false;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.rfind("```", 0) != 0) {
      if (inside && wanted) blocks.back().text += line + "\n";
      continue;
    }
    if (inside) {
      inside = false;
      continue;
    }
    inside = true;
    wanted = line == open;
    if (wanted) blocks.push_back(DocBlock{n, std::string()});
  }
  EXPECT_FALSE(inside) << repo_path << ": a ``` block is not closed";
  return blocks;
}

}  // namespace mandate::core::testing
