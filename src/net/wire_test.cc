#include "net/wire.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <string>

namespace mandate::net::internal {
namespace {

namespace http = boost::beast::http;
using core::ErrorCode;

// Beast's parser reads back what RequestBytes / ResponseHead wrote.
template <bool kRequest>
http::message<kRequest, http::string_body> Parse(const std::string& bytes) {
  http::parser<kRequest, http::string_body> p;
  p.eager(true);
  boost::beast::error_code ec;
  size_t used = p.put(boost::asio::buffer(bytes), ec);
  EXPECT_FALSE(ec) << ec.message() << " in:\n" << bytes;
  EXPECT_EQ(used, bytes.size());
  EXPECT_TRUE(p.is_done()) << bytes;
  return p.release();
}

TEST(Wire, ATokenIsTheCharactersRfc9110Allows) {
  EXPECT_TRUE(IsHttpToken("Content-Type"));
  EXPECT_TRUE(IsHttpToken("X-Api_Key.v2!#$%&'*+^`|~"));
  for (std::string_view bad : {"", "a b", "a:b", "a\r\nb", "(x)", "\xc3\xa9"}) {
    EXPECT_FALSE(IsHttpToken(bad)) << bad;
  }
}

TEST(Wire, ARequestIsItsLineHostHeadersLengthAndBody) {
  auto bytes = RequestBytes("POST", "/mcp?x=1", "127.0.0.1:8080",
                            {{"Content-Type", "application/json"}, {"Txn-Token", "a.b.c"}}, "{}");
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_EQ(*bytes,
            "POST /mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
            "Txn-Token: a.b.c\r\nContent-Length: 2\r\n\r\n{}");
  auto req = Parse<true>(*bytes);
  EXPECT_EQ(req.method(), http::verb::post);
  EXPECT_EQ(req.target(), "/mcp?x=1");
  EXPECT_EQ(req[http::field::host], "127.0.0.1:8080");
  EXPECT_EQ(req["Txn-Token"], "a.b.c");
  EXPECT_EQ(req.body(), "{}");
  EXPECT_TRUE(req.keep_alive());
}

TEST(Wire, TheLastHeaderOfANameWinsAndFramingIsOurs) {
  auto bytes = RequestBytes("GET", "/", "h:1",
                            {{"Accept", "a"}, {"host", "other:2"}, {"ACCEPT", "b"},
                             {"Content-Length", "99"}, {"Transfer-Encoding", "chunked"},
                             {"Connection", "close"}},
                            "");
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  // A GET without a body carries no Content-Length; the caller's framing headers are dropped.
  EXPECT_EQ(*bytes, "GET / HTTP/1.1\r\nhost: other:2\r\nACCEPT: b\r\n\r\n");
  auto req = Parse<true>(*bytes);
  EXPECT_TRUE(req.keep_alive());
  EXPECT_EQ(req[http::field::host], "other:2");
}

TEST(Wire, AnEmptyPostStillSaysItsLength) {
  auto bytes = RequestBytes("POST", "/", "h:1", {}, "");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, "POST / HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n");
  Parse<true>(*bytes);
}

TEST(Wire, NoHeaderCanAddAHeaderOrEndTheHead) {
  for (const std::string& value : {std::string("v\r\nX-Injected: 1"), std::string("v\nX: 1"),
                                   std::string("v\r"), std::string("v\0w", 3)}) {
    auto req = RequestBytes("POST", "/", "h:1", {{"Authorization", value}}, "{}");
    ASSERT_FALSE(req.ok());
    EXPECT_EQ(req.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(req.error().message.find("Authorization"), std::string::npos);
    auto res = ResponseHead(200, {{"Mcp-Session-Id", value}}, 0, true);
    ASSERT_FALSE(res.ok());
    EXPECT_EQ(res.error().code, ErrorCode::kInternal);
  }
  for (const std::string& name : {std::string(""), std::string("Bad Name"), std::string("a:b"),
                                  std::string("X\r\nY")}) {
    EXPECT_FALSE(RequestBytes("GET", "/", "h:1", {{name, "v"}}, "").ok()) << name;
    EXPECT_FALSE(ResponseHead(200, {{name, "v"}}, 0, true).ok()) << name;
  }
}

TEST(Wire, ABadMethodOrTargetIsRefused) {
  EXPECT_FALSE(RequestBytes("", "/", "h:1", {}, "").ok());
  EXPECT_FALSE(RequestBytes("GE T", "/", "h:1", {}, "").ok());
  EXPECT_FALSE(RequestBytes("GET", "", "h:1", {}, "").ok());
  EXPECT_FALSE(RequestBytes("GET", "/a b", "h:1", {}, "").ok());
  EXPECT_FALSE(RequestBytes("GET", "/a\r\nX: 1", "h:1", {}, "").ok());
  auto bad = RequestBytes("GET", "/\x7f", "h:1", {}, "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kBadRequest);
}

TEST(Wire, AnAnswersHeadIsItsStatusHeadersTypeLengthAndConnection) {
  auto head = ResponseHead(200, {{"Mcp-Session-Id", "s1"}}, 5, true);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(*head,
            "HTTP/1.1 200 OK\r\nMcp-Session-Id: s1\r\nContent-Type: application/json\r\n"
            "Content-Length: 5\r\n\r\n");
  auto res = Parse<false>(*head + "hello");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), "hello");
  EXPECT_TRUE(res.keep_alive());

  head = ResponseHead(404, {{"Content-Type", "text/plain"}}, 0, false);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n");
  EXPECT_FALSE(Parse<false>(*head).keep_alive());
}

TEST(Wire, AStreamedAnswerIsChunked) {
  auto head = ResponseHead(200, {{"Content-Type", "text/event-stream"}}, std::nullopt, true);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(*head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  auto res = Parse<false>(*head + "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(res.body(), "hello");
  EXPECT_FALSE(ResponseHead(204, {}, std::nullopt, true).ok());  // nothing to chunk
}

TEST(Wire, BodilessStatusesCarryNoLengthAndNoBody) {
  auto head = ResponseHead(204, {}, 0, true);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, "HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n\r\n");
  auto with_body = ResponseHead(304, {}, 3, true);
  ASSERT_FALSE(with_body.ok());
  EXPECT_EQ(with_body.error().code, ErrorCode::kInternal);
  EXPECT_FALSE(ResponseHead(99, {}, 0, true).ok());
  EXPECT_FALSE(ResponseHead(1000, {}, 0, true).ok());
  // An unregistered status keeps its number.
  head = ResponseHead(599, {}, 0, true);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(Parse<false>(*head).result_int(), 599u);
}

}  // namespace
}  // namespace mandate::net::internal
