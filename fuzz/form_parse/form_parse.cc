// Fuzz target: net::ParseForm on arbitrary bytes (the body of POST /oauth/token, which any
// agent can send). Invariants when a parse succeeds (a violation traps): at most
// kFormParamsMax parameters; re-encoding every pair with %XX escapes and parsing again gives
// the same map. Whatever ParseForm refuses must be refused with kBadRequest.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "mandate/core/error_code.h"
#include "mandate/core/limits.h"
#include "mandate/net/form.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string Encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char buf[4];
    std::snprintf(buf, sizeof(buf), "%%%02X", c);
    out += buf;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto form = mandate::net::ParseForm(input);
  if (!form.ok()) {
    Check(form.error().code == mandate::core::ErrorCode::kBadRequest);
    return 0;
  }
  Check(form->size() <= mandate::core::kFormParamsMax);
  std::string again;
  for (const auto& [k, v] : *form) {
    if (k.empty() && v.empty()) continue;  // "=" alone: an empty name, kept as is
    again += (again.empty() ? "" : "&") + Encode(k) + "=" + Encode(v);
  }
  auto reparsed = mandate::net::ParseForm(again);
  Check(reparsed.ok());
  for (const auto& [k, v] : *form) {
    if (k.empty() && v.empty()) continue;
    auto it = reparsed->find(k);
    Check(it != reparsed->end() && it->second == v);
  }
  return 0;
}
