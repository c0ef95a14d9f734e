// The approvals web page of the admin listener (DESIGN.md section 8, `/ui/`): three static
// files compiled into the binary (ui_assets.cc), holding no data. The page asks the approver
// for an approver token (server/approver_tokens.h), keeps it in the tab's sessionStorage and
// sends it as `Authorization: Bearer` to the approvals endpoints of the admin API; no cookies,
// so no CSRF. It lists pending approvals (agent, requester, task, action, the arguments
// pretty-printed, the policy that asked, approvals so far of min_approvers, expiry), with
// Approve and Deny (with a reason) buttons, refreshing every 2 s. Every value from the server
// is rendered as text (textContent), never as markup.
//
// Every answer carries a strict Content-Security-Policy (kUiContentSecurityPolicy: no inline
// script or style, nothing from another origin, no framing), X-Content-Type-Options: nosniff,
// Referrer-Policy: no-referrer and Cache-Control: no-cache.
//
// Thread safety: stateless; may be called concurrently.
#pragma once

#include <string_view>

#include "mandate/net/http.h"

namespace mandate::server {

inline constexpr std::string_view kUiContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

// Answers a request whose path is "/ui" or starts with "/ui/":
//   GET /ui/ (also /ui/index.html)  200 the page (text/html)
//   GET /ui/app.js, /ui/app.css     200 the script / the style sheet
//   /ui                             308 to /ui/
//   another /ui/... path            404
//   another method                  405 (Allow: GET)
net::HttpResponse ServeUiAsset(std::string_view method, std::string_view path);

}  // namespace mandate::server
