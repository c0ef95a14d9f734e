// Every limit Mandate enforces, named in one place (STYLE.md: "a limit on everything").
// Related limits are tied together with static_assert so they cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mandate::core {

// --- HTTP ---------------------------------------------------------------------------------
inline constexpr size_t kHttpHeaderBytesMax = 16 * 1024;
inline constexpr size_t kHttpRequestBodyBytesMax = 4 * 1024 * 1024;
inline constexpr size_t kHttpResponseBodyBytesMax = 16 * 1024 * 1024;  // from upstreams
inline constexpr size_t kConnectionsMax = 4096;                           // per listener
inline constexpr int kHttpIdleTimeoutSeconds = 120;

// --- JSON ---------------------------------------------------------------------------------
inline constexpr size_t kJsonDepthMax = 64;
inline constexpr size_t kJsonBytesMax = kHttpResponseBodyBytesMax;

// --- Tokens -------------------------------------------------------------------------------
inline constexpr size_t kTokenBytesMax = 8 * 1024;
inline constexpr int64_t kTokenClockSkewSeconds = 30;
inline constexpr int64_t kTokenTtlSecondsDefault = 15 * 60;
inline constexpr int64_t kTokenTtlSecondsMax = 24 * 60 * 60;
inline constexpr size_t kTokenCacheEntriesMax = 1 << 16;
inline constexpr size_t kScopeEntriesMax = 256;
inline constexpr size_t kDelegationDepthMax = 16;  // hard ceiling; config default is 4
static_assert(kTokenBytesMax <= kHttpHeaderBytesMax, "a token must fit in a header");

// --- Names --------------------------------------------------------------------------------
inline constexpr size_t kNameBytesMax = 128;  // human, agent, group, upstream, tool, task
inline constexpr size_t kGroupsPerPrincipalMax = 64;

// --- Policy -------------------------------------------------------------------------------
inline constexpr size_t kPolicyFileBytesMax = 1024 * 1024;
inline constexpr size_t kPolicyFilesMax = 1024;
inline constexpr size_t kPoliciesMax = 100000;
inline constexpr size_t kPolicyAstDepthMax = 64;
inline constexpr size_t kPolicyEvalStepsMax = 100000;  // per policy per request
inline constexpr size_t kEntityAncestorsMax = 1024;
static_assert(kPolicyAstDepthMax <= kJsonDepthMax * 2);

// --- MCP / upstreams ----------------------------------------------------------------------
inline constexpr size_t kMcpSessionsMax = 10000;
inline constexpr size_t kUpstreamInflightMax = 64;     // per upstream, default
inline constexpr size_t kUpstreamQueueMax = 1024;      // waiting for an in-flight slot
inline constexpr size_t kStdioLineBytesMax = kHttpResponseBodyBytesMax;
inline constexpr int kUpstreamTimeoutMillisDefault = 30000;
inline constexpr int kUpstreamRestartBackoffMillisMin = 100;
inline constexpr int kUpstreamRestartBackoffMillisMax = 30000;
inline constexpr size_t kToolsPerUpstreamMax = 4096;

// --- Audit --------------------------------------------------------------------------------
inline constexpr size_t kAuditRecordBytesMax = 1024 * 1024;
inline constexpr size_t kAuditQueueMax = 65536;  // appends waiting for group commit
inline constexpr size_t kAuditArgsBytesMax = 256 * 1024;
static_assert(kAuditArgsBytesMax < kAuditRecordBytesMax);

// --- Config -------------------------------------------------------------------------------
inline constexpr size_t kConfigBytesMax = 1024 * 1024;
inline constexpr size_t kUpstreamsMax = 256;

}  // namespace mandate::core
