// Test-only: a fresh directory under the system temp dir, removed with everything in it when
// the object goes (permissions restored first, for tests that make it unwritable).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace mandate::core::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "mandate-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  // Writes `bytes` to the file `name` in the directory (replacing it); returns its path.
  std::string Write(const std::string& name, const std::string& bytes) const {
    const std::string file = Sub(name);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    return file;
  }

 private:
  std::string path_;
};

}  // namespace mandate::core::testing
