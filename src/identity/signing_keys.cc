#include "mandate/identity/signing_keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <system_error>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"
#include "mandate/core/unique_fd.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;
using core::Status;

namespace {

constexpr char kActiveFileName[] = "active";
constexpr char kKeySuffix[] = ".pem";
constexpr char kRetireSuffix[] = ".retire";
constexpr size_t kActiveFileBytesMax = 256;

std::string SysError(int err) { return std::system_category().message(err); }

core::Error IoError(const std::string& what, const std::string& path, int err) {
  return MakeError(ErrorCode::kInternal, what + " " + path + ": " + SysError(err));
}

// A std::string holding secret bytes, wiped when it goes out of scope.
class SecretString {
 public:
  explicit SecretString(std::string s) : s_(std::move(s)) {}
  ~SecretString() { OPENSSL_cleanse(s_.data(), s_.size()); }
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  const std::string& get() const { return s_; }

 private:
  std::string s_;
};


std::string OctalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Creates `dir` (0700) if it does not exist and checks that it is a directory nobody else
// may write to: someone who can write to the key directory can plant a signing key.
Status EnsureDirectory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return IoError("cannot stat key directory", dir, errno);
    std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec) return IoError("cannot create directory", parent.string(), ec.value());
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return IoError("cannot create key directory", dir, errno);
    }
    if (::stat(dir.c_str(), &st) != 0) return IoError("cannot stat key directory", dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInternal, "key directory " + dir + " is not a directory");
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    return MakeError(ErrorCode::kInternal, "key directory " + dir +
                                               " is writable by others (mode " +
                                               OctalMode(st.st_mode) + "); run chmod 700 " + dir);
  }
  return core::OkStatus();
}

// Reads a whole regular file of at most `max_bytes`. With `owner_only`, refuses a file whose
// mode grants any permission to group or others. O_NOFOLLOW: a symlink is not followed, so
// the checks apply to the file actually read.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes, bool owner_only) {
  core::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return IoError("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return IoError("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInternal, path + " is not a regular file");
  }
  if (owner_only && (st.st_mode & 077) != 0) {
    return MakeError(ErrorCode::kInternal,
                     "refusing to load key file " + path +
                         ": it is accessible by group or others (mode " + OctalMode(st.st_mode) +
                         "); private keys must be mode 0600 (chmod 600 " + path + ")");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return MakeError(ErrorCode::kInternal,
                     path + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      OPENSSL_cleanse(out.data(), out.size());
      return IoError("cannot read", path, errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

Status FsyncDirectory(const std::string& dir) {
  core::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return IoError("cannot open directory", dir, errno);
  if (::fsync(fd.get()) != 0) return IoError("cannot fsync directory", dir, errno);
  return core::OkStatus();
}

// Writes `bytes` to `<dir>/<name>` atomically: a temporary file created with
// open(O_CREAT | O_EXCL, 0600) (never chmod-ed afterwards, so it is never visible with wider
// permissions), fsync, rename over the final name, fsync of the directory.
Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           std::string_view bytes) {
  const std::string final_path = dir + "/" + name;
  const std::string tmp_path = final_path + ".tmp-" + core::HexEncode(core::RandomBytes(8));
  {
    core::UniqueFd fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0) return IoError("cannot create", tmp_path, errno);
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::unlink(tmp_path.c_str());
        return IoError("cannot write", tmp_path, err);
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      int err = errno;
      ::unlink(tmp_path.c_str());
      return IoError("cannot fsync", tmp_path, err);
    }
  }
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return IoError("cannot rename into", final_path, err);
  }
  return FsyncDirectory(dir);
}

Result<std::vector<std::string>> ListKeyFiles(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return IoError("cannot list key directory", dir, errno);
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.' || !EndsWith(name, kKeySuffix)) continue;
    names.push_back(std::move(name));
    if (names.size() > core::kSigningKeysMax) break;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return IoError("cannot list key directory", dir, err);
  if (names.size() > core::kSigningKeysMax) {
    return MakeError(ErrorCode::kInternal, "key directory " + dir + " holds more than " +
                                               std::to_string(core::kSigningKeysMax) +
                                               " key files");
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status WriteActive(const std::string& dir, const std::string& kid) {
  return WriteFileAtomically(dir, kActiveFileName, kid + "\n");
}

std::shared_ptr<const JwsKey> FindIn(const std::vector<std::shared_ptr<const JwsKey>>& keys,
                                     std::string_view kid) {
  for (const auto& k : keys) {
    if (k->kid() == kid) return k;
  }
  return nullptr;
}

// Reads <dir>/<kid>.retire: nullopt when absent. Errors: unreadable or not a number.
Result<std::optional<int64_t>> ReadRetire(const std::string& dir, const std::string& kid) {
  const std::string path = dir + "/" + kid + kRetireSuffix;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<int64_t>();
    return IoError("cannot stat", path, errno);
  }
  MANDATE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kActiveFileBytesMax, /*owner_only=*/false));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || v < 0) {
    return MakeError(ErrorCode::kInternal, path + " does not hold Unix seconds");
  }
  return std::optional<int64_t>(static_cast<int64_t>(v));
}

// Deletes a retired key's files; best effort (a leftover file is retired again at the next
// load, never used).
void RemoveKeyFiles(const std::string& dir, const std::string& kid) {
  ::unlink((dir + "/" + kid + kKeySuffix).c_str());
  ::unlink((dir + "/" + kid + kRetireSuffix).c_str());
}

}  // namespace

SigningKeys::SigningKeys(std::string dir, const core::Clock& clock, std::shared_ptr<const JwsKey> active,
                         std::vector<std::shared_ptr<const JwsKey>> keys, std::map<std::string, int64_t> retire_at)
    : dir_(std::move(dir)),
      clock_(clock),
      active_(std::move(active)),
      keys_(std::move(keys)),
      retire_at_(std::move(retire_at)) {}

bool SigningKeys::LiveLocked(const JwsKey& k, int64_t now) const {
  if (active_ && k.kid() == active_->kid()) return true;
  auto it = retire_at_.find(k.kid());
  return it == retire_at_.end() || now <= it->second;
}

Result<std::unique_ptr<SigningKeys>> SigningKeys::LoadOrCreate(const std::string& dir_in, Alg alg,
                                                              const core::Clock& clock) {
  if (dir_in.empty()) return MakeError(ErrorCode::kInternal, "key directory is empty");
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  MANDATE_RETURN_IF_ERROR(EnsureDirectory(dir));

  MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> names, ListKeyFiles(dir));
  std::vector<std::shared_ptr<const JwsKey>> keys;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    MANDATE_ASSIGN_OR_RETURN(std::string pem_raw,
                             ReadSmallFile(path, core::kKeyFileBytesMax, /*owner_only=*/true));
    SecretString pem(std::move(pem_raw));
    auto key = JwsKey::FromPrivatePem(pem.get());
    if (!key.ok()) {
      return MakeError(ErrorCode::kInternal, "key file " + path + ": " + key.error().message);
    }
    if (FindIn(keys, (*key)->kid()) == nullptr) keys.push_back(std::move(*key));
  }

  std::shared_ptr<const JwsKey> active;
  const std::string active_path = dir + "/" + kActiveFileName;
  struct stat st {};
  bool has_active_file = ::lstat(active_path.c_str(), &st) == 0;
  if (!has_active_file && errno != ENOENT) return IoError("cannot stat", active_path, errno);

  if (has_active_file) {
    MANDATE_ASSIGN_OR_RETURN(std::string text,
                             ReadSmallFile(active_path, kActiveFileBytesMax, /*owner_only=*/false));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    active = FindIn(keys, text);
    if (active == nullptr) {
      return MakeError(ErrorCode::kInternal,
                       active_path + " names a key that is not in the key directory");
    }
  } else if (keys.size() == 1) {
    active = keys.front();
    MANDATE_RETURN_IF_ERROR(WriteActive(dir, active->kid()));
  } else if (keys.empty()) {
    MANDATE_ASSIGN_OR_RETURN(std::shared_ptr<const JwsKey> key, JwsKey::Generate(alg));
    MANDATE_ASSIGN_OR_RETURN(std::string pem_raw, key->PrivatePem());
    SecretString pem(std::move(pem_raw));
    // The key file is complete and durable before `active` names it.
    MANDATE_RETURN_IF_ERROR(WriteFileAtomically(dir, key->kid() + kKeySuffix, pem.get()));
    MANDATE_RETURN_IF_ERROR(WriteActive(dir, key->kid()));
    keys.push_back(key);
    active = std::move(key);
  } else {
    return MakeError(ErrorCode::kInternal, "key directory " + dir + " holds " +
                                               std::to_string(keys.size()) + " keys but no " +
                                               active_path + " naming the active one");
  }

  if (active->alg() != alg) {
    return MakeError(ErrorCode::kConflict,
                     "the active signing key in " + dir + " is " +
                         std::string(AlgName(active->alg())) + " but " + std::string(AlgName(alg)) +
                         " is configured; switching algorithms needs a key rotation");
  }
  // Retirement times of the verify-only keys; keys already retired are deleted.
  std::map<std::string, int64_t> retire_at;
  const int64_t now = clock.NowUnixSeconds();
  std::vector<std::shared_ptr<const JwsKey>> live;
  for (auto& k : keys) {
    if (k == active) {
      live.push_back(std::move(k));
      continue;
    }
    MANDATE_ASSIGN_OR_RETURN(std::optional<int64_t> at, ReadRetire(dir, k->kid()));
    if (at && now > *at) {
      RemoveKeyFiles(dir, k->kid());
      continue;
    }
    if (at) retire_at.emplace(k->kid(), *at);
    live.push_back(std::move(k));
  }
  keys = std::move(live);
  // Active key first, the verify-only keys after it in kid order.
  std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
    if ((a == active) != (b == active)) return a == active;
    return a->kid() < b->kid();
  });
  return std::unique_ptr<SigningKeys>(
      new SigningKeys(dir, clock, std::move(active), std::move(keys), std::move(retire_at)));
}

Result<SigningKeys::Rotation> SigningKeys::Rotate(Alg alg, int64_t verify_for_seconds) {
  if (verify_for_seconds < 0) return MakeError(ErrorCode::kBadRequest, "verify_for_seconds must not be negative");
  std::lock_guard<std::mutex> rotating(rotate_mu_);
  const int64_t now = clock_.NowUnixSeconds();
  std::shared_ptr<const JwsKey> previous = Active();
  {
    std::shared_lock lock(mu_);
    size_t live = 0;
    for (const auto& k : keys_) live += LiveLocked(*k, now) ? 1 : 0;
    if (live + 1 > core::kSigningKeysMax) {
      return MakeError(ErrorCode::kPayloadTooLarge,
                       "rotating would keep more than " + std::to_string(core::kSigningKeysMax) +
                           " signing keys alive; wait until older ones retire");
    }
  }
  MANDATE_ASSIGN_OR_RETURN(std::shared_ptr<const JwsKey> key, JwsKey::Generate(alg));
  MANDATE_ASSIGN_OR_RETURN(std::string pem_raw, key->PrivatePem());
  SecretString pem(std::move(pem_raw));
  const int64_t retires_at = now + verify_for_seconds;
  // Durable in this order: the new key, the old key's retirement, then `active`. A crash in
  // between leaves the old key active (and a harmless extra key, or an early retire file that
  // the old key, still active, ignores).
  MANDATE_RETURN_IF_ERROR(WriteFileAtomically(dir_, key->kid() + kKeySuffix, pem.get()));
  MANDATE_RETURN_IF_ERROR(WriteFileAtomically(dir_, previous->kid() + kRetireSuffix, std::to_string(retires_at) + "\n"));
  MANDATE_RETURN_IF_ERROR(WriteActive(dir_, key->kid()));

  std::vector<std::string> retired;
  {
    std::unique_lock lock(mu_);
    retire_at_[previous->kid()] = retires_at;
    active_ = key;
    std::vector<std::shared_ptr<const JwsKey>> keys{key};
    for (auto& k : keys_) {
      if (LiveLocked(*k, now)) {
        keys.push_back(std::move(k));
      } else {
        retired.push_back(k->kid());
        retire_at_.erase(k->kid());
      }
    }
    keys_ = std::move(keys);
  }
  for (const std::string& kid : retired) RemoveKeyFiles(dir_, kid);
  return Rotation{key->kid(), previous->kid(), retires_at};
}

std::vector<SigningKeys::KeyInfo> SigningKeys::List() const {
  const int64_t now = clock_.NowUnixSeconds();
  std::shared_lock lock(mu_);
  std::vector<KeyInfo> out;
  for (const auto& k : keys_) {
    if (!LiveLocked(*k, now)) continue;
    KeyInfo info;
    info.kid = k->kid();
    info.alg = k->alg();
    info.active = k == active_;
    if (auto it = retire_at_.find(k->kid()); it != retire_at_.end() && !info.active) info.retires_at = it->second;
    out.push_back(std::move(info));
  }
  return out;
}

std::shared_ptr<const JwsKey> SigningKeys::Active() const {
  std::shared_lock lock(mu_);
  return active_;
}

std::shared_ptr<const JwsKey> SigningKeys::Find(std::string_view kid) const {
  const int64_t now = clock_.NowUnixSeconds();
  std::shared_lock lock(mu_);
  auto k = FindIn(keys_, kid);
  return k && LiveLocked(*k, now) ? k : nullptr;
}

Json SigningKeys::Jwks() const {
  const int64_t now = clock_.NowUnixSeconds();
  std::shared_lock lock(mu_);
  Json arr = Json::MakeArray();
  for (const auto& k : keys_) {
    if (LiveLocked(*k, now)) arr.Push(k->PublicJwk());
  }
  Json out = Json::MakeObject();
  out.Set("keys", std::move(arr));
  return out;
}

size_t SigningKeys::size() const {
  const int64_t now = clock_.NowUnixSeconds();
  std::shared_lock lock(mu_);
  return static_cast<size_t>(std::count_if(keys_.begin(), keys_.end(), [&](const auto& k) { return LiveLocked(*k, now); }));
}

}  // namespace mandate::identity
