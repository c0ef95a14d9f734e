// Result<T> and Status: how every fallible function in Mandate reports failure. No exceptions
// cross a module boundary (STYLE.md). Shaped like std::expected so it can be swapped later.
#pragma once

#include <cassert>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

#include "mandate/core/error_code.h"

namespace mandate::core {

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status OkStatus() { return Status(); }

}  // namespace mandate::core

#define MANDATE_CONCAT_INNER_(a, b) a##b
#define MANDATE_CONCAT_(a, b) MANDATE_CONCAT_INNER_(a, b)

#define MANDATE_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    auto mandate_status_ = (expr);                     \
    if (!mandate_status_.ok()) {                       \
      return std::move(mandate_status_).error();       \
    }                                                  \
  } while (0)

#define MANDATE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).error();        \
  lhs = std::move(tmp).value()

#define MANDATE_ASSIGN_OR_RETURN(lhs, expr) \
  MANDATE_ASSIGN_OR_RETURN_IMPL_(MANDATE_CONCAT_(mandate_result_, __LINE__), lhs, expr)
