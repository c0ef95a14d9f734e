// cedar_decide: decides Cedar authorization cases with Mandate's engine, one after another, so
// that tests/differential/run.mjs can compare every decision with the Cedar reference
// implementation (@cedar-policy/cedar-wasm). See docs/policy.md, "Differential testing".
//
// Input: JSON Lines on stdin, one case per line (at most kCaseBytesMax bytes, newline excluded):
//   {"policies": "<Cedar policy text>",
//    "entities": [{"uid": {"type": T, "id": I}, "attrs": {...}, "parents": [{"type", "id"}...],
//                  "tags": {...}}],
//    "request":  {"principal": {"type", "id"}, "action": {...}, "resource": {...},
//                 "context": {...}}}
// Entities are in the Cedar JSON entity format (policy::EntitiesFromJson); a uid may also be
// written {"__entity": {"type", "id"}}. "attrs", "parents", "tags" and "context" may be left
// out (empty). Values may hold extension values as {"__extn": {"fn": F, "arg": A}}.
// Policy ids are their @id annotations, else "case:<index>" (policy_set.h).
//
// Output: one JSON line per input line, in order:
//   {"decision": "allow"|"deny", "determining": [ids], "errored": [ids], "errors": [messages]}
// where "determining" are the satisfied permits of an allow or the satisfied forbids of a deny
// (Cedar's diagnostics.reason), "errored" the policies skipped on an evaluation error (Cedar's
// diagnostics.errors), both sorted by id; "errors" are Mandate's messages, for reports. A case
// that cannot be decided (invalid JSON, a policy parse error, an oversize line, a bad entity...)
// answers {"error": "<why>"} and the stream goes on with the next line.
//
// Output is flushed whenever the program is about to wait for input, so a driver may write any
// number of cases before reading their answers. Exit status 0 at end of input; 1 when stdin or
// stdout fails.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"

namespace mandate::differential {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;
using policy::EntityUid;
using policy::Value;

// One case: its policies, entities and request. A policy file may be kPolicyFileBytesMax bytes;
// entities and the request get as much again.
constexpr size_t kCaseBytesMax = 2 * core::kPolicyFileBytesMax;
static_assert(kCaseBytesMax <= core::kJsonBytesMax, "a case must be parseable as one JSON text");
constexpr size_t kEntitiesPerCaseMax = 10000;
constexpr size_t kReadChunkBytes = 64 * 1024;

// Splits stdin into lines of at most kCaseBytesMax bytes. A longer line is reported once and
// skipped up to its newline, so the stream stays in step with the driver.
class LineReader {
 public:
  enum class Status { kLine, kTooLong, kEnd, kError };

  // Reads the next line into *line (without its newline). `before_wait` is called whenever the
  // reader is about to block on stdin.
  template <typename F>
  Status Next(std::string* line, F&& before_wait) {
    bool too_long = false;
    for (;;) {
      size_t nl = buffer_.find('\n', start_);
      if (nl != std::string::npos) {
        bool was_too_long = too_long || nl - start_ > kCaseBytesMax;
        if (!was_too_long) line->assign(buffer_, start_, nl - start_);
        start_ = nl + 1;
        return was_too_long ? Status::kTooLong : Status::kLine;
      }
      if (buffer_.size() - start_ > kCaseBytesMax) {
        // Invariant: the buffer never holds more than one chunk past the limit.
        too_long = true;
        buffer_.clear();
        start_ = 0;
      }
      if (eof_) {
        if (start_ == buffer_.size() && !too_long) return Status::kEnd;
        bool was_too_long = too_long || buffer_.size() - start_ > kCaseBytesMax;
        if (!was_too_long) line->assign(buffer_, start_, std::string::npos);
        buffer_.clear();
        start_ = 0;
        return was_too_long ? Status::kTooLong : Status::kLine;
      }
      before_wait();
      if (!Fill()) return Status::kError;
    }
  }

 private:
  bool Fill() {
    if (start_ > 0) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
    size_t old = buffer_.size();
    buffer_.resize(old + kReadChunkBytes);
    ssize_t n;
    do {
      n = read(STDIN_FILENO, buffer_.data() + old, kReadChunkBytes);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return false;
    buffer_.resize(old + static_cast<size_t>(n));
    if (n == 0) eof_ = true;
    return true;
  }

  std::string buffer_;
  size_t start_ = 0;
  bool eof_ = false;
};

Result<policy::Entities> EntitiesFromJson(const Json* j) {
  if (j == nullptr) return policy::Entities();
  return policy::EntitiesFromJson(*j, kEntitiesPerCaseMax);
}

Result<policy::Request> RequestFromJson(const Json* j) {
  if (j == nullptr || !j->is_object()) {
    return MakeError(ErrorCode::kBadRequest, "\"request\" must be an object");
  }
  policy::Request request;
  const Json* principal = j->Find("principal");
  const Json* action = j->Find("action");
  const Json* resource = j->Find("resource");
  if (principal == nullptr || action == nullptr || resource == nullptr) {
    return MakeError(ErrorCode::kBadRequest, "request needs principal, action and resource");
  }
  MANDATE_ASSIGN_OR_RETURN(request.principal, policy::EntityUidFromJson(*principal, "principal"));
  MANDATE_ASSIGN_OR_RETURN(request.action, policy::EntityUidFromJson(*action, "action"));
  MANDATE_ASSIGN_OR_RETURN(request.resource, policy::EntityUidFromJson(*resource, "resource"));
  if (const Json* c = j->Find("context")) {
    if (!c->is_object()) return MakeError(ErrorCode::kBadRequest, "\"context\" must be an object");
    MANDATE_ASSIGN_OR_RETURN(request.context, policy::ValueFromJson(*c));
  }
  return request;
}

void AppendIds(std::string_view key, std::vector<std::string> ids, std::string* out) {
  std::sort(ids.begin(), ids.end());
  out->push_back('"');
  out->append(key);
  out->append("\":[");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out->push_back(',');
    core::AppendJsonString(ids[i], out);
  }
  out->push_back(']');
}

// The id of the policy an error message of Response::errors ("<id>: <message>") is about: the
// longest id that prefixes it, so ids containing ": " are still found.
std::string ErroredId(const policy::PolicySet& policies, std::string_view message) {
  std::string best;
  for (const policy::Policy& p : policies.policies()) {
    if (p.id.size() > best.size() && message.size() > p.id.size() + 1 &&
        message.substr(0, p.id.size()) == p.id && message.substr(p.id.size(), 2) == ": ") {
      best = p.id;
    }
  }
  return best;
}

// Decides one case: its answer line, without the newline. Errors: why the case cannot be
// decided (invalid JSON or case shape, a policy parse error, an entity Mandate refuses).
Result<std::string> Decide(std::string_view line) {
  MANDATE_ASSIGN_OR_RETURN(Json j, Json::Parse(line, kCaseBytesMax));
  if (!j.is_object()) return MakeError(ErrorCode::kBadRequest, "a case must be a JSON object");
  const std::string* text = j.FindString("policies");
  if (text == nullptr) {
    return MakeError(ErrorCode::kBadRequest, "\"policies\" must be a string of Cedar policies");
  }
  MANDATE_ASSIGN_OR_RETURN(policy::PolicySet policies, policy::PolicySet::Parse(*text, "case"));
  MANDATE_ASSIGN_OR_RETURN(policy::Entities entities, EntitiesFromJson(j.Find("entities")));
  MANDATE_ASSIGN_OR_RETURN(policy::Request request, RequestFromJson(j.Find("request")));

  policy::Response response = policy::IsAuthorized(policies, request, entities);
  std::vector<std::string> errored;
  errored.reserve(response.errors.size());
  for (const std::string& e : response.errors) errored.push_back(ErroredId(policies, e));
  std::string out = response.allow ? R"({"decision":"allow",)" : R"({"decision":"deny",)";
  AppendIds("determining", response.allow ? response.permits : response.forbids, &out);
  out.push_back(',');
  AppendIds("errored", std::move(errored), &out);
  out.append(",\"errors\":[");
  for (size_t i = 0; i < response.errors.size(); ++i) {
    if (i > 0) out.push_back(',');
    core::AppendJsonString(response.errors[i], &out);
  }
  out.append("]}");
  return out;
}

bool Flush(std::string* out) {
  if (out->empty()) return true;
  bool ok =
      std::fwrite(out->data(), 1, out->size(), stdout) == out->size() && std::fflush(stdout) == 0;
  out->clear();
  return ok;
}

int Main() {
  LineReader reader;
  std::string line;
  std::string out;
  bool write_ok = true;
  size_t line_number = 0;
  for (;;) {
    LineReader::Status status = reader.Next(&line, [&] { write_ok = write_ok && Flush(&out); });
    if (!write_ok) {
      std::fprintf(stderr, "cedar_decide: cannot write to stdout\n");
      return 1;
    }
    if (status == LineReader::Status::kEnd) break;
    if (status == LineReader::Status::kError) {
      std::fprintf(stderr, "cedar_decide: cannot read stdin\n");
      return 1;
    }
    ++line_number;
    std::string error;
    if (status == LineReader::Status::kTooLong) {
      error = "line " + std::to_string(line_number) + " is longer than " +
              std::to_string(kCaseBytesMax) + " bytes";
    } else {
      Result<std::string> answer = Decide(line);
      if (answer.ok()) {
        out.append(*answer);
      } else {
        error = "line " + std::to_string(line_number) + ": " + answer.error().message;
      }
    }
    if (!error.empty()) {
      out.append("{\"error\":");
      core::AppendJsonString(error, &out);
      out.push_back('}');
    }
    out.push_back('\n');
  }
  if (!Flush(&out)) {
    std::fprintf(stderr, "cedar_decide: cannot write to stdout\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace mandate::differential

int main() { return mandate::differential::Main(); }
