// RFC 6962 / RFC 9162 Merkle tree hashing for the audit log (docs/formats/audit.md): leaf and
// node hashes, an incremental root, inclusion and consistency proofs and their verification.
//
// Definitions (RFC 9162 section 2.1.1): for leaves D[n] = {d(0), ..., d(n-1)},
//   MTH({})     = SHA-256()
//   MTH({d(0)}) = SHA-256(0x00 || d(0))
//   MTH(D[n])   = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of 2 < n.
// Functions taking `leaves` take the leaf hashes (SHA-256(0x00 || record)), not the records.
//
// Thread safety: free functions are pure; a MerkleAccumulator is not synchronized.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "mandate/core/crypto.h"

namespace mandate::audit {

using Hash = core::Sha256Digest;

// Limit on proof length: a tree of at most 2^64 leaves has proofs of at most 64 hashes.
inline constexpr size_t kMerkleProofHashesMax = 64;

Hash LeafHash(std::string_view record);            // SHA-256(0x00 || record)
Hash NodeHash(const Hash& left, const Hash& right);  // SHA-256(0x01 || left || right)
Hash EmptyTreeHash();                                // SHA-256 of the empty string

// The root of a growing tree in O(log n) memory: keeps the roots of the perfect subtrees
// that the binary representation of the size decomposes the tree into.
class MerkleAccumulator {
 public:
  void Push(const Hash& leaf_hash);
  uint64_t size() const { return size_; }
  // MTH of the leaves pushed so far (EmptyTreeHash() when none). O(log n).
  Hash Root() const;

 private:
  // peaks_[i] is the root of a perfect subtree; sizes strictly decrease, largest first, and
  // their sum is size_.
  std::vector<Hash> peaks_;
  std::vector<uint64_t> peak_sizes_;
  uint64_t size_ = 0;
};

// MTH of `leaves`. O(n) time, O(log n) stack.
Hash RootOf(std::span<const Hash> leaves);

// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 PATH(m, D[n])), deepest
// sibling first. Precondition (checked): index < leaves.size().
std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index);

// RFC 9162 section 2.1.3.2: whether `proof` proves that `leaf_hash` is leaf `index` of the
// tree of `tree_size` leaves with root `root`. Any malformed input is simply false.
bool VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash,
                     std::span<const Hash> proof, const Hash& root);

// RFC 6962 PROOF(m, D[n]) for old_size m of the tree of `leaves` (n = leaves.size()).
// Precondition (checked): 0 < old_size <= leaves.size(). Empty when old_size == n.
std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size);

// RFC 9162 section 2.1.4.2: whether `proof` proves that the tree of old_size leaves with root
// old_root is a prefix of the tree of new_size leaves with root new_root.
bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                       const Hash& new_root, std::span<const Hash> proof);

}  // namespace mandate::audit
