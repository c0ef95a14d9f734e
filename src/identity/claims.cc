#include "mandate/identity/claims.h"

#include <algorithm>

#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;
using core::Status;

namespace {

// The thumbprint in cnf.jkt is a base64url SHA-256 digest.
constexpr size_t kJktDigestBytes = 32;

core::Error ClaimError(std::string_view claim, std::string_view problem) {
  return MakeError(ErrorCode::kBadRequest,
                   "claim \"" + std::string(claim) + "\" " + std::string(problem));
}

// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
bool IsScopeToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
    if (!ok) return false;
  }
  return true;
}

Result<std::string> RequiredString(const Json& obj, std::string_view key,
                                   std::string_view where = {}) {
  const Json* v = obj.Find(key);
  std::string name = where.empty() ? std::string(key) : std::string(where) + "." + std::string(key);
  if (v == nullptr) return ClaimError(name, "is missing");
  if (!v->is_string()) return ClaimError(name, "must be a string");
  return v->as_string();
}

// Absent => empty string; present but not a string => error.
Result<std::string> OptionalString(const Json& obj, std::string_view key,
                                   std::string_view where = {}) {
  const Json* v = obj.Find(key);
  if (v == nullptr) return std::string();
  std::string name = where.empty() ? std::string(key) : std::string(where) + "." + std::string(key);
  if (!v->is_string()) return ClaimError(name, "must be a string");
  return v->as_string();
}

Result<int64_t> RequiredTime(const Json& obj, std::string_view key) {
  const Json* v = obj.Find(key);
  if (v == nullptr) return ClaimError(key, "is missing");
  if (!v->is_int()) return ClaimError(key, "must be an integer (NumericDate, Unix seconds)");
  return v->as_int();
}

}  // namespace

bool Claims::HasAudience(std::string_view audience) const {
  return std::find(aud.begin(), aud.end(), audience) != aud.end();
}

bool Claims::HasScope(std::string_view scope_token) const {
  return std::find(scope.begin(), scope.end(), scope_token) != scope.end();
}

Status Claims::Validate() const {
  if (iss.empty()) return ClaimError("iss", "must not be empty");
  if (aud.empty()) return ClaimError("aud", "must name at least one audience");
  if (aud.size() > core::kAudiencesMax) {
    return ClaimError("aud", "has more than " + std::to_string(core::kAudiencesMax) + " entries");
  }
  for (const auto& a : aud) {
    if (a.empty()) return ClaimError("aud", "must not contain an empty audience");
  }
  if (sub.empty()) return ClaimError("sub", "must not be empty");
  if (client_id.empty()) return ClaimError("client_id", "must not be empty");
  if (sid.empty()) return ClaimError("sid", "must not be empty");
  if (jti.empty()) return ClaimError("jti", "must not be empty");
  if (act.size() > core::kActorChainEntriesMax) {
    return ClaimError(
        "act", "nests deeper than " + std::to_string(core::kActorChainEntriesMax) + " actors");
  }
  for (const auto& a : act) {
    if (a.sub.empty()) return ClaimError("act.sub", "must not be empty");
  }
  if (scope.size() > core::kScopeEntriesMax) {
    return ClaimError("scope",
                      "has more than " + std::to_string(core::kScopeEntriesMax) + " entries");
  }
  for (const auto& s : scope) {
    if (!IsScopeToken(s)) {
      return ClaimError("scope", "has an entry that is empty or not an RFC 6749 scope token");
    }
  }
  if (model) {
    if (model->provider.empty()) return ClaimError("model.provider", "must not be empty");
    if (model->name.empty()) return ClaimError("model.name", "must not be empty");
  }
  if (cnf_jkt) {
    auto raw = core::Base64UrlDecode(*cnf_jkt);
    if (!raw || raw->size() != kJktDigestBytes) {
      return ClaimError("cnf.jkt", "must be a base64url SHA-256 thumbprint");
    }
  }
  if (iat < 0) return ClaimError("iat", "must not be negative");
  if (nbf < 0) return ClaimError("nbf", "must not be negative");
  if (exp < 0) return ClaimError("exp", "must not be negative");
  if (exp <= nbf) return ClaimError("exp", "must be later than nbf");
  return core::OkStatus();
}

Json Claims::ToJson() const {
  Json j = Json::MakeObject();
  j.Set("iss", iss);
  if (aud.size() == 1) {
    j.Set("aud", aud.front());
  } else {
    Json arr = Json::MakeArray();
    for (const auto& a : aud) arr.Push(a);
    j.Set("aud", std::move(arr));
  }
  j.Set("sub", sub);
  j.Set("client_id", client_id);
  j.Set("sid", sid);
  j.Set("jti", jti);
  if (!act.empty()) {
    // Built from the innermost (oldest) actor outwards, so act[0] ends up outermost.
    Json nested;
    for (auto it = act.rbegin(); it != act.rend(); ++it) {
      Json a = Json::MakeObject();
      a.Set("sub", it->sub);
      if (!it->sid.empty()) a.Set("sid", it->sid);
      if (!nested.is_null()) a.Set("act", std::move(nested));
      nested = std::move(a);
    }
    j.Set("act", std::move(nested));
  }
  if (!task.empty()) j.Set("task", task);
  if (!scope.empty()) {
    std::string joined;
    for (size_t i = 0; i < scope.size(); ++i) {
      if (i > 0) joined.push_back(' ');
      joined += scope[i];
    }
    j.Set("scope", std::move(joined));
  }
  if (model) {
    Json m = Json::MakeObject();
    m.Set("provider", model->provider);
    m.Set("name", model->name);
    if (!model->tier.empty()) m.Set("tier", model->tier);
    j.Set("model", std::move(m));
  }
  if (cnf_jkt) {
    Json cnf = Json::MakeObject();
    cnf.Set("jkt", *cnf_jkt);
    j.Set("cnf", std::move(cnf));
  }
  j.Set("iat", iat);
  j.Set("nbf", nbf);
  j.Set("exp", exp);
  return j;
}

Result<Claims> Claims::FromJson(const Json& json) {
  if (!json.is_object()) return MakeError(ErrorCode::kBadRequest, "claims are not a JSON object");
  Claims c;
  MANDATE_ASSIGN_OR_RETURN(c.iss, RequiredString(json, "iss"));

  const Json* aud = json.Find("aud");
  if (aud == nullptr) return ClaimError("aud", "is missing");
  if (aud->is_string()) {
    c.aud.push_back(aud->as_string());
  } else if (aud->is_array()) {
    if (aud->as_array().size() > core::kAudiencesMax) {
      return ClaimError("aud", "has more than " + std::to_string(core::kAudiencesMax) + " entries");
    }
    for (const Json& a : aud->as_array()) {
      if (!a.is_string()) return ClaimError("aud", "must be a string or an array of strings");
      c.aud.push_back(a.as_string());
    }
  } else {
    return ClaimError("aud", "must be a string or an array of strings");
  }

  MANDATE_ASSIGN_OR_RETURN(c.sub, RequiredString(json, "sub"));
  MANDATE_ASSIGN_OR_RETURN(c.client_id, RequiredString(json, "client_id"));
  MANDATE_ASSIGN_OR_RETURN(c.sid, RequiredString(json, "sid"));
  MANDATE_ASSIGN_OR_RETURN(c.jti, RequiredString(json, "jti"));

  // Iterative walk down the nested "act" objects; the depth is bounded before each step.
  for (const Json* a = json.Find("act"); a != nullptr; a = a->Find("act")) {
    if (!a->is_object()) return ClaimError("act", "must be an object");
    if (c.act.size() == core::kActorChainEntriesMax) {
      return ClaimError(
          "act", "nests deeper than " + std::to_string(core::kActorChainEntriesMax) + " actors");
    }
    Actor actor;
    MANDATE_ASSIGN_OR_RETURN(actor.sub, RequiredString(*a, "sub", "act"));
    MANDATE_ASSIGN_OR_RETURN(actor.sid, OptionalString(*a, "sid", "act"));
    c.act.push_back(std::move(actor));
  }

  MANDATE_ASSIGN_OR_RETURN(c.task, OptionalString(json, "task"));

  if (const Json* scope = json.Find("scope"); scope != nullptr) {
    if (!scope->is_string()) return ClaimError("scope", "must be a space-separated string");
    std::string_view s = scope->as_string();
    if (!s.empty()) {
      size_t entries = static_cast<size_t>(std::count(s.begin(), s.end(), ' ')) + 1;
      if (entries > core::kScopeEntriesMax) {
        return ClaimError("scope",
                          "has more than " + std::to_string(core::kScopeEntriesMax) + " entries");
      }
      size_t start = 0;
      while (true) {
        size_t sp = s.find(' ', start);
        c.scope.emplace_back(s.substr(start, sp == std::string_view::npos ? sp : sp - start));
        if (sp == std::string_view::npos) break;
        start = sp + 1;
      }
    }
  }

  if (const Json* model = json.Find("model"); model != nullptr) {
    if (!model->is_object()) return ClaimError("model", "must be an object");
    ModelInfo m;
    MANDATE_ASSIGN_OR_RETURN(m.provider, RequiredString(*model, "provider", "model"));
    MANDATE_ASSIGN_OR_RETURN(m.name, RequiredString(*model, "name", "model"));
    MANDATE_ASSIGN_OR_RETURN(m.tier, OptionalString(*model, "tier", "model"));
    c.model = std::move(m);
  }

  if (const Json* cnf = json.Find("cnf"); cnf != nullptr) {
    if (!cnf->is_object()) return ClaimError("cnf", "must be an object");
    // Fail closed: a confirmation method other than jkt cannot be checked here, and ignoring
    // it would turn a key-bound token into a bearer token.
    MANDATE_ASSIGN_OR_RETURN(std::string jkt, RequiredString(*cnf, "jkt", "cnf"));
    c.cnf_jkt = std::move(jkt);
  }

  MANDATE_ASSIGN_OR_RETURN(c.iat, RequiredTime(json, "iat"));
  MANDATE_ASSIGN_OR_RETURN(c.nbf, RequiredTime(json, "nbf"));
  MANDATE_ASSIGN_OR_RETURN(c.exp, RequiredTime(json, "exp"));

  MANDATE_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace mandate::identity
