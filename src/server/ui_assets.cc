#include "server/ui_assets.h"

#include <string>

namespace mandate::server {
namespace {

// The page. Relative URLs, so /ui/ and /ui/index.html both find app.js and app.css. The only
// script is app.js (CSP script-src 'self'; no inline script or handler attributes).
constexpr std::string_view kIndexHtml = R"mandate_ui(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Mandate approvals</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header>
  <h1>Mandate approvals</h1>
  <p id="whoami" hidden>Signed in as <strong id="approver-name"></strong>
    <button type="button" id="sign-out">Sign out</button></p>
</header>
<main>
  <form id="sign-in" hidden>
    <label for="token">Approver token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required>
    <button type="submit">Sign in</button>
    <p class="hint">An operator mints one for you with
      <code>mandate approver token YOUR-NAME</code>. It is kept in this browser tab only.</p>
  </form>
  <p id="status" role="status" aria-live="polite"></p>
  <p id="error" class="error" role="alert"></p>
  <section id="pending" aria-labelledby="pending-title" hidden>
    <h2 id="pending-title">Pending approvals</h2>
    <p id="empty">No pending approvals.</p>
    <ul id="approvals"></ul>
  </section>
  <noscript><p>This page needs JavaScript.</p></noscript>
</main>
</body>
</html>
)mandate_ui";

// The script. Invariant: values from the server reach the page through textContent (and
// element attributes set from constants) only, never innerHTML or similar, so arguments an
// agent chose cannot inject markup.
constexpr std::string_view kAppJs = R"mandate_ui('use strict';
// The approvals page of Mandate's admin listener. No framework, no build step.
(() => {
  const TOKEN_KEY = 'mandate.approverToken';
  const REFRESH_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const items = new Map(); // approval id -> {li, fields, buttons, reason, message}
  let timer = null;
  let busy = 0; // decisions in flight: no refresh meanwhile
  let nextId = 0;

  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  function setText(el, text) { el.textContent = text == null ? '' : String(text); }

  /** Calls the admin API with the approver token; throws an Error with the server's message. */
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let json = null;
    try { json = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const e = json && json.error;
      const err = new Error(e && e.message ? `${e.message} (${e.code})` : `HTTP ${res.status}`);
      err.status = res.status;
      err.code = e && e.code;
      throw err;
    }
    return json;
  }

  function when(us) {
    if (typeof us !== 'number') return '';
    const ms = us / 1000;
    const left = Math.round((ms - Date.now()) / 1000);
    const rel = left <= 0 ? 'now' : left < 120 ? `in ${left} s` : `in ${Math.round(left / 60)} min`;
    return `${new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')} (${rel})`;
  }

  function pretty(args) {
    if (args === null || args === undefined) return '(not shown)';
    try { return JSON.stringify(args, null, 2); } catch { return String(args); }
  }

  function row(dl, label, field) {
    const dt = document.createElement('dt');
    setText(dt, label);
    const dd = document.createElement('dd');
    dd.dataset.field = field;
    dl.append(dt, dd);
    return dd;
  }

  /** The element of one approval, made once; refreshes update its fields in place. */
  function makeItem(id) {
    const n = ++nextId;
    const li = document.createElement('li');
    li.className = 'approval';
    li.dataset.approvalId = id;
    const article = document.createElement('article');
    article.setAttribute('aria-labelledby', `approval-${n}-title`);
    const h3 = document.createElement('h3');
    h3.id = `approval-${n}-title`;
    const action = document.createElement('span');
    action.className = 'action';
    const idEl = document.createElement('span');
    idEl.className = 'approval-id';
    setText(idEl, id);
    h3.append(action, ' ', idEl);
    const dl = document.createElement('dl');
    const f = {
      action,
      agent: row(dl, 'Agent', 'agent'),
      human: row(dl, 'On behalf of (requester)', 'human'),
      task: row(dl, 'Task', 'task'),
      policy: row(dl, 'Policy that asked', 'policy'),
      group: row(dl, 'Approval group', 'group'),
      approvals: row(dl, 'Approvals', 'approvals'),
      expires: row(dl, 'Expires', 'expires'),
      sha: row(dl, 'Arguments SHA-256', 'args_sha256'),
    };
    const argsTitle = document.createElement('h4');
    setText(argsTitle, 'Arguments');
    f.args = document.createElement('pre');
    f.args.className = 'args';
    f.args.dataset.field = 'args';
    f.args.tabIndex = 0;

    const actions = document.createElement('div');
    actions.className = 'actions';
    const approve = document.createElement('button');
    approve.type = 'button';
    approve.className = 'approve';
    setText(approve, 'Approve');
    const reasonId = `approval-${n}-reason`;
    const reasonLabel = document.createElement('label');
    reasonLabel.htmlFor = reasonId;
    setText(reasonLabel, 'Reason for denial');
    const reason = document.createElement('input');
    reason.id = reasonId;
    reason.type = 'text';
    reason.maxLength = 1024;
    reason.autocomplete = 'off';
    const deny = document.createElement('button');
    deny.type = 'button';
    deny.className = 'deny';
    setText(deny, 'Deny');
    actions.append(approve, reasonLabel, reason, deny);
    const message = document.createElement('p');
    message.className = 'message error';
    message.setAttribute('role', 'alert');

    article.append(h3, dl, argsTitle, f.args, actions, message);
    li.append(article);
    const item = { li, f, approve, deny, reason, message };
    approve.addEventListener('click', () => decide(id, item, 'approve'));
    deny.addEventListener('click', () => decide(id, item, 'deny'));
    return item;
  }

  function fill(item, a) {
    const f = item.f;
    setText(f.action, a.action);
    setText(f.agent, a.agent);
    setText(f.human, a.human);
    setText(f.task, a.task || '(none)');
    setText(f.policy, a.policy || '(unnamed)');
    setText(f.group, a.group);
    const approvers = Array.isArray(a.approvers) ? a.approvers : [];
    setText(f.approvals, `${approvers.length} of ${a.min_approvers}` +
      (approvers.length ? ` (${approvers.join(', ')})` : ''));
    setText(f.expires, when(a.expires_at));
    setText(f.sha, a.args_sha256);
    const text = pretty(a.args);
    if (f.args.textContent !== text) setText(f.args, text);
  }

  function render(list) {
    const ul = $('approvals');
    const seen = new Set();
    for (const a of list) {
      if (!a || typeof a.id !== 'string') continue;
      seen.add(a.id);
      let item = items.get(a.id);
      if (!item) {
        item = makeItem(a.id);
        items.set(a.id, item);
        ul.append(item.li);
      }
      fill(item, a);
    }
    for (const [id, item] of items) {
      if (!seen.has(id)) {
        item.li.remove();
        items.delete(id);
      }
    }
    $('empty').hidden = items.size > 0;
  }

  function signedOut(message) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    render([]);
    $('pending').hidden = true;
    $('whoami').hidden = true;
    $('sign-in').hidden = false;
    setText($('error'), message || '');
    setText($('status'), '');
  }

  async function refresh() {
    if (busy > 0 || !token()) return;
    try {
      const r = await api('GET', '/admin/v1/approvals');
      if (!token()) return; // signed out meanwhile
      setText($('error'), '');
      setText($('approver-name'), r.approver || '(admin token)');
      $('whoami').hidden = false;
      $('sign-in').hidden = true;
      $('pending').hidden = false;
      render(Array.isArray(r.approvals) ? r.approvals : []);
    } catch (err) {
      if (err.status === 401) signedOut(err.message);
      else setText($('error'), `Cannot list approvals: ${err.message}`);
    }
  }

  async function decide(id, item, verb) {
    setText(item.message, '');
    const body = {};
    if (verb === 'deny' && item.reason.value.trim() !== '') body.reason = item.reason.value.trim();
    busy++;
    item.approve.disabled = true;
    item.deny.disabled = true;
    try {
      const r = await api('POST', `/admin/v1/approvals/${encodeURIComponent(id)}/${verb}`, body);
      const n = Array.isArray(r.approvers) ? r.approvers.length : 0;
      const counted = r.counted === false ? '; your vote was already counted' : '';
      setText($('status'), `${id}: ${verb === 'approve' ? 'approved' : 'denied'} by you, now ` +
        `${r.state} (${n} of ${r.min_approvers} approvers${counted})`);
    } catch (err) {
      setText(item.message, err.message);
      if (err.status === 401) signedOut(err.message);
    } finally {
      busy--;
      item.approve.disabled = false;
      item.deny.disabled = false;
    }
    await refresh();
  }

  function start() {
    stop();
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      start();
    });
    $('sign-out').addEventListener('click', () => signedOut('Signed out.'));
    if (token()) start();
    else signedOut('');
  });
})();
)mandate_ui";

constexpr std::string_view kAppCss =
    R"mandate_ui(:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.4; }
body { margin: 0 auto; max-width: 60rem; padding: 1rem; }
[hidden] { display: none !important; }
header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 1rem; }
h1 { font-size: 1.5rem; margin: 0.5rem 0; }
form#sign-in { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin: 1rem 0; }
form#sign-in input { flex: 1 1 20rem; font-family: ui-monospace, monospace; }
.hint { flex-basis: 100%; margin: 0; font-size: 0.9rem; }
.error { color: #b00020; font-weight: 600; }
.error:empty, #status:empty { display: none; }
#approvals { list-style: none; padding: 0; }
.approval article { border: 1px solid #8888; border-radius: 0.5rem; padding: 0.75rem 1rem; margin: 0 0 1rem; }
.approval h3 { margin: 0 0 0.5rem; font-size: 1.1rem; }
.approval-id { font-family: ui-monospace, monospace; font-size: 0.85rem; font-weight: normal; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
dd[data-field="args_sha256"] { font-family: ui-monospace, monospace; font-size: 0.85rem; }
h4 { margin: 0.75rem 0 0.25rem; }
pre.args { background: #8882; padding: 0.5rem; overflow: auto; max-height: 24rem; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin-top: 0.75rem; }
.actions input { flex: 1 1 12rem; }
button { font: inherit; padding: 0.3rem 0.9rem; cursor: pointer; }
button.approve { background: #1b7f3a; color: #fff; border: 1px solid #1b7f3a; border-radius: 0.3rem; }
button.deny { background: #b00020; color: #fff; border: 1px solid #b00020; border-radius: 0.3rem; }
button:disabled { opacity: 0.6; cursor: wait; }
button:focus-visible, input:focus-visible, pre:focus-visible { outline: 3px solid #1a73e8; outline-offset: 2px; }
)mandate_ui";

net::HttpResponse Asset(int status, std::string_view content_type, std::string_view body) {
  net::HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", std::string(content_type));
  r.headers.emplace_back("Content-Security-Policy", std::string(kUiContentSecurityPolicy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.body = std::string(body);
  return r;
}

}  // namespace

net::HttpResponse ServeUiAsset(std::string_view method, std::string_view path) {
  if (method != "GET") {
    net::HttpResponse r = Asset(405, "text/plain; charset=utf-8", "use GET\n");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (path == "/ui") {
    net::HttpResponse r = Asset(308, "text/plain; charset=utf-8", "see /ui/\n");
    r.headers.emplace_back("Location", "/ui/");
    return r;
  }
  if (path == "/ui/" || path == "/ui/index.html") {
    return Asset(200, "text/html; charset=utf-8", kIndexHtml);
  }
  if (path == "/ui/app.js") return Asset(200, "text/javascript; charset=utf-8", kAppJs);
  if (path == "/ui/app.css") return Asset(200, "text/css; charset=utf-8", kAppCss);
  return Asset(404, "text/plain; charset=utf-8", "not found\n");
}

}  // namespace mandate::server
