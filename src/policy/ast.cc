#include "policy/ast.h"

namespace mandate::policy {

std::string_view VarName(Var v) {
  switch (v) {
    case Var::kPrincipal:
      return "principal";
    case Var::kAction:
      return "action";
    case Var::kResource:
      return "resource";
    case Var::kContext:
      return "context";
  }
  return "?";
}

bool Pattern::Matches(std::string_view s) const {
  // Greedy leftmost matching is exact for patterns whose only metacharacter is `*`: the first
  // segment is a prefix, the last a suffix, and each middle segment may be taken at its
  // earliest occurrence after the previous one. Byte-wise comparison equals character-wise
  // comparison on valid UTF-8 (no character's encoding starts inside another's).
  if (segments.size() == 1) return s == segments[0];
  const std::string& prefix = segments.front();
  const std::string& suffix = segments.back();
  if (s.size() < prefix.size() + suffix.size()) return false;
  if (s.substr(0, prefix.size()) != prefix) return false;
  if (s.substr(s.size() - suffix.size()) != suffix) return false;
  std::string_view middle = s.substr(prefix.size(), s.size() - prefix.size() - suffix.size());
  size_t pos = 0;
  for (size_t i = 1; i + 1 < segments.size(); ++i) {
    size_t found = middle.find(segments[i], pos);
    if (found == std::string_view::npos) return false;
    pos = found + segments[i].size();
  }
  return true;
}

std::string Pattern::ToString() const {
  std::string out = "\"";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out.push_back('*');
    for (char c : segments[i]) {
      switch (c) {
        case '*':
          out.append("\\*");
          break;
        case '"':
          out.append("\\\"");
          break;
        case '\\':
          out.append("\\\\");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        default:
          out.push_back(c);
      }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace mandate::policy
