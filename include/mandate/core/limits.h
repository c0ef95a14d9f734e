// Every limit Mandate enforces, named in one place (STYLE.md: "a limit on everything").
// Related limits are tied together with static_assert so they cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mandate::core {

// --- HTTP ---------------------------------------------------------------------------------
inline constexpr size_t kHttpHeaderBytesMax = 16 * 1024;
inline constexpr size_t kHttpRequestBodyBytesMax = 4 * 1024 * 1024;
// The read buffer a server connection starts with: a tool call's request (about 1 KiB with
// its token) then arrives in one read; beast's default first read of 512 bytes split it in two.
inline constexpr size_t kHttpConnectionReadBufferBytes = 8 * 1024;
// The most of a gated request's bytes the thread that opens its forward gate sends for it
// (core/forward_gate.h, net::HttpClient): that thread is the audit log's committer, shared by
// every call, so a large request's rest is sent by its own caller.
inline constexpr size_t kGateSendBytesMax = 64 * 1024;
inline constexpr size_t kHttpResponseBodyBytesMax = 16 * 1024 * 1024;  // from upstreams
inline constexpr size_t kConnectionsMax = 4096;                           // per listener
// max_connections of the agent listener when not configured; the admin listener's is fixed.
inline constexpr uint32_t kAgentConnectionsDefault = 1024;
inline constexpr size_t kAdminConnectionsMax = 64;
static_assert(kAgentConnectionsDefault <= kConnectionsMax && kAdminConnectionsMax <= kConnectionsMax);
inline constexpr int kHttpIdleTimeoutSeconds = 120;
inline constexpr size_t kFormParamsMax = 32;  // parameters of a form-encoded body

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
inline constexpr uint32_t kDelegationDepthDefault = 4;  // tokens.max_delegation_depth
inline constexpr size_t kSessionTreeNodesMax = 1000;  // sessions one `session show` tree lists
static_assert(kTokenBytesMax <= kHttpHeaderBytesMax, "a token must fit in a header");
// Transaction tokens sent to upstreams (src/identity/txn_token.cc): lifetime, and the longest
// member (a name, an action id, a session id...).
inline constexpr int64_t kTxnTokenTtlSecondsDefault = 60;
inline constexpr size_t kTxnTokenFieldBytesMax = 512;
// Approver tokens (a human approver's token for the approvals of the admin listener): the
// default and the longest lifetime (also never longer than tokens.max_ttl, so a key rotation
// retires the old key only after every approver token it signed has expired).
inline constexpr int64_t kApproverTokenTtlSecondsDefault = 8 * 60 * 60;
inline constexpr int64_t kApproverTokenTtlSecondsMax = 24 * 60 * 60;
static_assert(kApproverTokenTtlSecondsDefault <= kApproverTokenTtlSecondsMax &&
              kApproverTokenTtlSecondsMax <= kTokenTtlSecondsMax);

// --- Names --------------------------------------------------------------------------------
inline constexpr size_t kNameBytesMax = 128;  // human, agent, group, upstream, tool, task
inline constexpr size_t kGroupsPerPrincipalMax = 64;

// --- Policy -------------------------------------------------------------------------------
inline constexpr size_t kPolicyFileBytesMax = 1024 * 1024;
inline constexpr size_t kPolicyFilesMax = 1024;
inline constexpr size_t kPoliciesMax = 100000;
inline constexpr size_t kPolicyAstDepthMax = 64;
inline constexpr size_t kPolicyEvalStepsMax = 100000;  // per policy per request
inline constexpr size_t kPolicyTestCasesMax = 10000;  // cases in one .ptest file
// The policies dir is reloaded once no change was seen for this long (editors write in steps).
inline constexpr int kPolicyReloadSettleMillis = 200;
inline constexpr size_t kEntityAncestorsMax = 1024;
static_assert(kPolicyAstDepthMax <= kJsonDepthMax * 2);
// Schemas generated from tools' inputSchemas (src/policy/schema.cc, docs/policy.md "Schema and
// validation"). An inputSchema comes from an upstream, so it is untrusted: a type nested deeper
// than kPolicySchemaTypeDepthMax is left unvalidated, and so are the arguments of a tool whose
// inputSchema declares more than kPolicySchemaToolAttributesMax properties (all levels), or any
// tool beyond kPolicySchemaAttributesMax properties over the whole schema. Property names
// longer than kPolicySchemaAttributeBytesMax make their record open (unvalidated).
inline constexpr size_t kPolicySchemaTypeDepthMax = 16;
inline constexpr size_t kPolicySchemaToolAttributesMax = 4096;
inline constexpr size_t kPolicySchemaAttributesMax = 1 << 20;
inline constexpr size_t kPolicySchemaAttributeBytesMax = 1024;
inline constexpr size_t kPolicySchemaNotesMax = 200;  // notes kept about unvalidated parts
// Work of one validation (src/policy/validator.cc): one step per request environment a
// policy's scope is tested in, and one per expression node typed in it. Beyond it the remaining
// policies are reported as not checked.
inline constexpr size_t kPolicyValidationStepsMax = 50'000'000;
static_assert(kPolicySchemaToolAttributesMax <= kPolicySchemaAttributesMax);
// A schema source (GET /admin/v1/policies/schema) carries each inputSchema cut at this JSON
// depth: deeper than anything the mapping reads (two JSON levels per type level, "properties"
// and the property), and shallow enough that the answer, which nests it 6 levels deep, parses
// within kJsonDepthMax. The Cedar JSON of a type takes two levels per record, under 8 levels
// of schema and answer.
inline constexpr size_t kPolicySchemaInputJsonDepthMax = 40;
static_assert(2 * kPolicySchemaTypeDepthMax + 2 <= kPolicySchemaInputJsonDepthMax);
static_assert(kPolicySchemaInputJsonDepthMax + 6 <= kJsonDepthMax);
static_assert(2 * kPolicySchemaTypeDepthMax + 8 <= kJsonDepthMax);

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

// --- Identity: signing keys and token claims -----------------------------------------------
inline constexpr size_t kSigningKeysMax = 16;          // key files in the key directory
inline constexpr size_t kKeyFileBytesMax = 64 * 1024;  // one PEM key file (Ed25519 is ~120 B)
inline constexpr size_t kActorChainEntriesMax = kDelegationDepthMax + 1;  // nested "act" claims
inline constexpr size_t kAudiencesMax = 16;  // entries of an array-valued "aud" claim
// Each "act" level is one JSON object level, below the claims object itself.
static_assert(kActorChainEntriesMax + 2 <= kJsonDepthMax, "act chain must fit the JSON depth");

// --- DPoP proofs (src/identity/dpop.cc, RFC 9449) -------------------------------------------
// One `DPoP` header value: a JWS whose header carries the public JWK (~250 bytes of base64url
// for P-256) and whose payload carries jti, htm, htu, iat and ath.
inline constexpr size_t kDpopProofBytesMax = 4 * 1024;
inline constexpr size_t kDpopJtiBytesMax = 256;
// The "htu" claim and the request URI it is compared with, without query and fragment.
inline constexpr size_t kDpopHtuBytesMax = 2048;
// How far a proof's iat may lie behind / ahead of the server clock, by default; each is
// configurable up to kDpopIatWindowSecondsMax.
inline constexpr int64_t kDpopIatPastSecondsDefault = 60;
inline constexpr int64_t kDpopIatFutureSecondsDefault = 5;
inline constexpr int64_t kDpopIatWindowSecondsMax = 300;
// (jkt, jti) pairs the replay cache remembers. An entry lives until its proof's iat leaves the
// window (at most past + future seconds), so this bounds the sustained rate of DPoP proofs
// (~2,000/s with the default 65 s) and the memory (~120 bytes an entry, ~15 MiB). When it is
// full of live entries, new proofs are refused (fail closed: forgetting one would allow a replay).
inline constexpr size_t kDpopReplayEntriesMax = 1 << 17;
static_assert(kDpopIatPastSecondsDefault <= kDpopIatWindowSecondsMax &&
              kDpopIatFutureSecondsDefault <= kDpopIatWindowSecondsMax);
static_assert((kDpopJtiBytesMax + kDpopHtuBytesMax + 256) * 4 / 3 + 512 <= kDpopProofBytesMax,
              "a proof with the longest jti and htu fits");
static_assert(kTokenBytesMax + kDpopProofBytesMax < kHttpHeaderBytesMax,
              "a token and its proof fit in the request headers");

// --- Audit log files and the store (src/audit, src/store) ---------------------------------
// A segment file rolls to the next one before a record would take it past this size.
inline constexpr size_t kAuditSegmentBytesMax = 64 * 1024 * 1024;
// The current segment is filled with NUL bytes this far ahead of its records, a chunk at a
// time (write + fdatasync), so a group commit's fdatasync finds its blocks allocated
// (docs/formats/audit.md, "Preallocated space"). Never past the segment's size limit.
inline constexpr size_t kAuditPreallocAheadBytes = 16 * 1024 * 1024;
inline constexpr size_t kAuditPreallocChunkBytes = 512 * 1024;
static_assert(kAuditPreallocChunkBytes <= kAuditPreallocAheadBytes);
// The spare (the next segment) is filled, a chunk at a time, at this many times the pace
// records fill the second half of the current segment, and the filler looks at that pace
// this often while it is ahead of it: NUL bytes written at the disk's full speed queue every
// group commit's fdatasync behind them (docs/performance.md).
inline constexpr uint64_t kAuditSparePace = 2;
inline constexpr int kAuditSparePollMillis = 2;
// A submitted (non-waiting) audit record is synced at the latest this long after it is written,
// when no durable append comes first.
inline constexpr int kAuditFlushIntervalMillis = 20;
// Bytes the log adds to a caller's record ("seq", "ts", "prev", "hash" members and commas).
// A record is refused unless its canonical form plus this overhead fits kAuditRecordBytesMax.
inline constexpr size_t kAuditFramingBytesMax = 256;
inline constexpr size_t kAuditTailLinesMax = 100000;  // lines one TailLog call may return
// Signed checkpoints: at least every this many records or this long (while records are
// uncovered), and at shutdown. Configurable (audit.checkpoint_records/_interval).
inline constexpr uint64_t kAuditCheckpointRecordsDefault = 10000;
inline constexpr int64_t kAuditCheckpointIntervalMicrosDefault = 1000000;
inline constexpr uint64_t kAuditCheckpointRecordsMax = 100000000;
inline constexpr int64_t kAuditCheckpointIntervalMillisMin = 10;
inline constexpr int64_t kAuditCheckpointIntervalMillisMax = 3600 * 1000;
// Proofs are built from every leaf hash held in memory (32 bytes per record).
// Circuit breakers (per upstream; config `circuit_breaker`).
inline constexpr uint32_t kBreakerFailuresDefault = 5;
inline constexpr uint32_t kBreakerFailuresMax = 1000;
inline constexpr int64_t kBreakerCoolDownMillisDefault = 30 * 1000;
inline constexpr int64_t kBreakerCoolDownMillisMax = 3600 * 1000;
// Side-effect references extracted per upstream or tool (config `audit.side_effects`), and
// the bytes one extracted value may keep.
inline constexpr size_t kAuditSideEffectRulesMax = 16;
inline constexpr size_t kAuditSideEffectBytesMax = 2048;
inline constexpr uint64_t kAuditProofRecordsMax = 512ull * 1024 * 1024;
static_assert(kAuditRecordBytesMax + 1 <= kAuditSegmentBytesMax, "a record must fit a segment");
static_assert(kAuditFramingBytesMax < kAuditRecordBytesMax);
inline constexpr int kStoreBusyTimeoutMillis = 5000;  // waiting for another writer's lock
inline constexpr size_t kStoreListLimitMax = 1000;    // rows per ListSessions page
// The store connection's page cache, KiB (PRAGMA cache_size = -N; SQLite's default is 2,000):
// enough for the audit index's hot pages (the end of each run's and session's range in its
// indexes) when a thousand sessions write at once (docs/performance.md).
inline constexpr int kStoreCacheKib = 65536;
// WAL pages after which a commit copies the WAL back into the database file (PRAGMA
// wal_autocheckpoint; SQLite's default is 1,000). With the default the audit index's batches,
// which dirty a page per session that wrote, were copied back after nearly every commit; with
// this each hot page is copied once per ~40 MB of WAL (docs/performance.md).
inline constexpr int kStoreWalCheckpointPages = 10000;
// Audit index terms (session ids, names, actions) the store keeps in memory with their ids,
// so indexing a record looks none up in the database; cleared when full. About 1.5 MiB with
// 30-byte session ids; at most 16 MiB of terms, each at most kAuditIndexFieldBytesMax.
inline constexpr size_t kStoreAuditTermCacheEntriesMax = 16384;
inline constexpr size_t kScopeEntryBytesMax = 2 * kNameBytesMax + 1;  // "<upstream>:<tool>"
inline constexpr size_t kRevocationReasonBytesMax = 1024;
inline constexpr size_t kDpopJktBytesMax = 128;  // RFC 7638 SHA-256 thumbprint is 43 chars

// --- Config (server): counts and ranges of mandate.yaml, see docs/configuration.md -----------
// Upstream, tool, credential, budget and approval-group names in the config. They become parts
// of action ids "<upstream>:<tool>" and of URL paths, so they are short and ASCII.
inline constexpr size_t kConfigNameBytesMax = 64;
inline constexpr size_t kConfigUrlBytesMax = 2048;        // upstream url, tokens.issuer
inline constexpr size_t kConfigToolsMax = 16384;          // tool entries over all upstreams
inline constexpr size_t kUpstreamCommandArgsMax = 256;    // argv entries of a stdio upstream
inline constexpr size_t kUpstreamEnvVarsMax = 256;        // env entries of a stdio upstream
inline constexpr size_t kUpstreamInflightDefault = 16;    // max_inflight when not configured
inline constexpr int kUpstreamTimeoutMillisMax = 60 * 60 * 1000;
inline constexpr size_t kResourceTemplateBytesMax = 1024;  // upstream `resource:` template
inline constexpr size_t kCredentialsMax = 1024;
inline constexpr size_t kBudgetsMax = 1024;
inline constexpr size_t kApprovalGroupsMax = 256;
inline constexpr uint32_t kApprovalMinApproversMax = 16;
inline constexpr int64_t kApprovalWaitMillisMax = 24 * 60 * 60 * 1000;
static_assert(kConfigNameBytesMax <= kNameBytesMax);
static_assert(kUpstreamInflightDefault >= 1 && kUpstreamInflightDefault <= kUpstreamInflightMax);
static_assert(kUpstreamTimeoutMillisDefault <= kUpstreamTimeoutMillisMax);
static_assert(kToolsPerUpstreamMax <= kConfigToolsMax);

// --- MCP upstream clients (src/adapters/mcp/upstream_*.cc) ---------------------------------
// A stdio child that stayed initialized this long resets the restart backoff to its minimum.
inline constexpr int kUpstreamRestartHealthyMillis = 10000;
// Stop(): after closing stdin, how long a child may take to exit before SIGTERM, then SIGKILL.
inline constexpr int kUpstreamStopEofGraceMillis = 200;
inline constexpr int kUpstreamStopTermGraceMillis = 2000;
// Last stderr lines of a stdio child kept for error messages, and the bytes kept per line.
inline constexpr size_t kUpstreamStderrTailLines = 16;
inline constexpr size_t kUpstreamStderrLineBytesMax = 512;
// tools/list pages followed before the listing is refused as malformed.
inline constexpr size_t kUpstreamToolsPagesMax = 1024;
// Times one HTTP request may resume its SSE stream (GET with Last-Event-ID) after it ended
// without the response.
inline constexpr size_t kSseResumesMax = 16;
// Fire-and-forget HTTP messages (notifications/cancelled, answers to server requests) waiting
// to be posted; beyond it they are dropped. Each is posted with this timeout.
inline constexpr size_t kUpstreamNotifyQueueMax = 256;
inline constexpr int kUpstreamNotifyTimeoutMillis = 1000;
static_assert(kUpstreamStopEofGraceMillis < kUpstreamStopTermGraceMillis);
static_assert(kUpstreamRestartBackoffMillisMin <= kUpstreamRestartBackoffMillisMax);
static_assert(kUpstreamInflightMax <= kUpstreamQueueMax);

// --- Net and admin API (named here, not in the files that use them) ------------------------
inline constexpr size_t kStreamMessagesQueuedMax = 1024;   // per streamed HTTP answer
inline constexpr size_t kIdleConnectionsPerHostMax = 64;  // HTTP client keep-alive pool
inline constexpr size_t kAdminAuditPageMax = 10000;       // GET /admin/v1/audit?limit=
static_assert(kAdminAuditPageMax <= kAuditTailLinesMax);
// A page of GET /admin/v1/audit (query) or /audit/replay stops before its records would pass
// this many bytes (at least one record is always returned), so the CLI can read any page.
inline constexpr size_t kAdminAuditPageBytesMax = 8 * 1024 * 1024;
static_assert(kAdminAuditPageBytesMax >= kAuditRecordBytesMax &&
              kAdminAuditPageBytesMax <= kHttpResponseBodyBytesMax / 2,
              "a page holds any one record and fits a client's response limit");

// --- Audit index, query, replay and export (src/server/audit_*.cc) --------------------------
// Records the indexer reads and writes to the store in one transaction.
inline constexpr size_t kAuditIndexBatchMax = 4096;
// The background indexer yields the CPU (sched_yield) after every this many records it reads
// and writes. It shares the CPUs with the calls: a pass of 400 records ran 4 ms straight, and
// calls woken on its CPU waited behind it; with this, its CPU bursts measured p50 0.1 ms, p99
// 1.0 ms at 1,000 calls/s (docs/performance.md). Committing this many at a time instead
// doubled the index's CPU per record.
inline constexpr size_t kAuditIndexYieldEvery = 32;
static_assert(kAuditIndexYieldEvery > 0 && kAuditIndexYieldEvery <= kAuditIndexBatchMax);
// How often the indexer looks for new records when nobody wakes it.
inline constexpr int kAuditIndexIntervalMillis = 200;
// Indexed fields (run, sid, agent, human, action, type, decision) longer than this are cut:
// they come from records (ids and names are far shorter), and they must stay cheap to index.
inline constexpr size_t kAuditIndexFieldBytesMax = 1024;
static_assert(kStoreAuditTermCacheEntriesMax * kAuditIndexFieldBytesMax <= (size_t{16} << 20),
              "the store's audit term cache stays within 16 MiB of terms");
// Segment files one RecordReader keeps open.
inline constexpr size_t kAuditReaderOpenSegmentsMax = 16;
// Rows one store query returns (QueryAuditIndex caps its limit to it): a page, and one more
// to know whether another page follows.
inline constexpr size_t kAuditIndexQueryRowsMax = kAdminAuditPageMax + 1;
// How long a query waits for the audit index to reach the end of the log before answering
// from what is indexed (with "index_behind": true): only a rebuild of a large log takes longer.
inline constexpr int64_t kAuditIndexCatchUpMillisMax = 5000;
// Records of one run that replay and the OTLP export read; the rest is left off and the
// answer says it was truncated.
inline constexpr size_t kAuditRunRecordsMax = 100000;
// Runs one OTLP export without `run` covers (one ExportTraceServiceRequest line each).
inline constexpr size_t kAuditExportRunsMax = 100000;
// The OTLP export `mandate audit export --format otlp` reads in one answer (JSONL is paged).
inline constexpr size_t kAuditExportResponseBytesMax = 1024ull * 1024 * 1024;
static_assert(kAuditIndexQueryRowsMax <= kAuditRunRecordsMax);

// --- Budgets (src/budget) ------------------------------------------------------------------
// Live buckets (one budget x one scope value x one window instance) the ledger holds at once.
// Beyond it a Reserve that needs a new bucket is refused (fail closed: forgetting old usage
// would let a budget overrun). Each bucket costs ~100 bytes plus its key, plus ~0.5 KiB for a
// sliding window's slots.
inline constexpr size_t kBudgetBucketsMax = 1 << 16;
// Scope values and run ids come from token claims, so none is longer than a token; the key
// of a bucket is at most about twice this.
inline constexpr size_t kBudgetSubjectBytesMax = kTokenBytesMax;
// Longest sliding window (`window: 366d`).
inline constexpr int64_t kBudgetWindowSecondsMax = 366LL * 24 * 60 * 60;
// A run's calls are all admitted within its maximum lifetime (root creation + tokens.max_ttl,
// itself at most kTokenTtlSecondsMax) plus the clock skew tokens are allowed; a `window: run`
// bucket idle for longer can never be used again and is collected.
inline constexpr int64_t kBudgetRunIdleSecondsMax = kTokenTtlSecondsMax + kTokenClockSkewSeconds;
// Values of one field of a budget's match (agents, humans, upstreams, actions, classes).
inline constexpr size_t kBudgetMatchValuesMax = 256;
static_assert(kBudgetRunIdleSecondsMax > kTokenTtlSecondsMax);
static_assert(kBudgetsMax <= kBudgetBucketsMax, "every budget must be able to hold a bucket");

// --- Approvals (src/approval) ----------------------------------------------------------------
// Pending approval requests the book holds at once, and per session (so one runaway agent
// cannot crowd out everyone else's). Beyond either, a Request that needs a new approval is
// refused with kConflict (fail closed: the call is not admitted).
inline constexpr size_t kApprovalsPendingMax = 1000;
inline constexpr size_t kApprovalsPendingPerSessionMax = 16;
// Decided approvals (granted and not yet used, used, denied, expired) remembered for
// `GET /v1/approvals/<id>`, `approvals list` and refusing retries of a denied call. Beyond it
// the one that would be forgotten soonest is forgotten now.
inline constexpr size_t kApprovalsDecidedMax = 4000;
inline constexpr size_t kAdminApprovalsPageMax = 1000;  // GET /admin/v1/approvals
// A pending request's arguments, as shown to approvers (compact JSON). Larger arguments cannot
// be approved (kPayloadTooLarge): an approver must see everything an approval covers.
inline constexpr size_t kApprovalArgsBytesMax = 64 * 1024;
// Any one string of a request (ids, names, action, policy) and a denial's reason.
inline constexpr size_t kApprovalFieldBytesMax = 1024;
inline constexpr size_t kApprovalReasonBytesMax = 1024;
// How long a pending request lives, and how long a granted approval stays usable by a retry
// (config `expiry`), and the default parking time (config `wait`).
inline constexpr int64_t kApprovalExpiryMicrosDefault = 15LL * 60 * 1000000;
inline constexpr int64_t kApprovalExpiryMicrosMin = 1000000;
inline constexpr int64_t kApprovalExpiryMicrosMax = 7LL * 24 * 60 * 60 * 1000000;
inline constexpr int64_t kApprovalWaitMicrosDefault = 60LL * 1000000;
// A call parked for approval whose client asked for progress (MCP progressToken) is told it
// is still waiting this often.
inline constexpr int64_t kApprovalProgressIntervalMicros = 5LL * 1000000;
static_assert(kApprovalsPendingPerSessionMax <= kApprovalsPendingMax);
static_assert(kApprovalWaitMicrosDefault <= kApprovalExpiryMicrosDefault &&
              kApprovalWaitMillisMax * 1000 <= kApprovalExpiryMicrosMax,
              "a parked call never outlives the request it waits for");
static_assert(kApprovalArgsBytesMax <= kAuditArgsBytesMax &&
              kApprovalArgsBytesMax + 16 * kApprovalFieldBytesMax + kAuditFramingBytesMax <
                  kAuditRecordBytesMax,
              "an approval.requested record (arguments and fields) fits one audit record");
static_assert(kApprovalMinApproversMax * kNameBytesMax + 16 * kApprovalFieldBytesMax <
                  kAuditRecordBytesMax,
              "an approval.decided record (every approver) fits one audit record");

// --- Plans (src/plan) --------------------------------------------------------------------------
// Steps of one plan, and how many calls one step may admit (max_count).
inline constexpr size_t kPlanStepsMax = 64;
inline constexpr int64_t kPlanStepCountMax = 10000;
// A step's `when` condition (Cedar expression text).
inline constexpr size_t kPlanConditionBytesMax = 4096;
// Metrics of a plan's budget envelope.
inline constexpr size_t kPlanBudgetMetricsMax = 16;
// A plan lives at most as long as a session can (ttl_seconds; also the default).
inline constexpr int64_t kPlanTtlSecondsMax = kTokenTtlSecondsMax;
// Plans the book holds at once (current and superseded/decided ones kept for Get). Beyond it a
// Submit is refused with kConflict once nothing can be forgotten (fail closed).
inline constexpr size_t kPlansMax = 10000;
// Any one string of a submission (sid, run, agent, human, approver, reason).
inline constexpr size_t kPlanFieldBytesMax = 1024;
static_assert(kPlanStepsMax * (kPlanConditionBytesMax + kScopeEntryBytesMax + 64) +
                      kPlanBudgetMetricsMax * (kConfigNameBytesMax + 32) + 8 * kPlanFieldBytesMax +
                      kAuditFramingBytesMax <
                  kAuditRecordBytesMax,
              "a plan.submitted record (every step) fits one audit record");

}  // namespace mandate::core
