#include "mandate/audit/merkle.h"

#include <bit>
#include <string_view>

#include "mandate/core/check.h"

namespace mandate::audit {
namespace {

std::string_view View(const Hash& h) {
  return std::string_view(reinterpret_cast<const char*>(h.data()), h.size());
}

// The largest power of two strictly smaller than n (n >= 2).
uint64_t SplitPoint(uint64_t n) {
  MANDATE_DCHECK(n >= 2);
  return std::bit_floor(n - 1);
}

void Path(std::span<const Hash> leaves, uint64_t index, std::vector<Hash>* out) {
  if (leaves.size() <= 1) return;
  const uint64_t k = SplitPoint(leaves.size());
  if (index < k) {
    Path(leaves.first(k), index, out);
    out->push_back(RootOf(leaves.subspan(k)));
  } else {
    Path(leaves.subspan(k), index - k, out);
    out->push_back(RootOf(leaves.first(k)));
  }
}

void SubProof(std::span<const Hash> leaves, uint64_t m, bool whole, std::vector<Hash>* out) {
  const uint64_t n = leaves.size();
  if (m == n) {
    if (!whole) out->push_back(RootOf(leaves));
    return;
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(leaves.first(k), m, whole, out);
    out->push_back(RootOf(leaves.subspan(k)));
  } else {
    SubProof(leaves.subspan(k), m - k, false, out);
    out->push_back(RootOf(leaves.first(k)));
  }
}

}  // namespace

Hash LeafHash(std::string_view record) {
  static constexpr char kLeafPrefix[1] = {0x00};
  return core::Sha256Concat(std::string_view(kLeafPrefix, 1), record);
}

Hash NodeHash(const Hash& left, const Hash& right) {
  return core::Sha256Concat("\x01", View(left), View(right));
}

Hash EmptyTreeHash() { return core::Sha256(""); }

void MerkleAccumulator::Push(const Hash& leaf_hash) {
  Hash carry = leaf_hash;
  uint64_t carry_size = 1;
  // Merge equal-sized perfect subtrees, like binary addition of 1 to size_.
  while (!peaks_.empty() && peak_sizes_.back() == carry_size) {
    carry = NodeHash(peaks_.back(), carry);
    carry_size *= 2;
    peaks_.pop_back();
    peak_sizes_.pop_back();
  }
  peaks_.push_back(carry);
  peak_sizes_.push_back(carry_size);
  ++size_;
}

Hash MerkleAccumulator::Root() const {
  if (peaks_.empty()) return EmptyTreeHash();
  // The tree's right spine: fold from the smallest subtree up.
  Hash root = peaks_.back();
  for (size_t i = peaks_.size() - 1; i-- > 0;) root = NodeHash(peaks_[i], root);
  return root;
}

Hash RootOf(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyTreeHash();
  if (leaves.size() == 1) return leaves[0];
  const uint64_t k = SplitPoint(leaves.size());
  return NodeHash(RootOf(leaves.first(k)), RootOf(leaves.subspan(k)));
}

std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index) {
  MANDATE_CHECK(index < leaves.size());
  std::vector<Hash> out;
  Path(leaves, index, &out);
  return out;
}

bool VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash,
                     std::span<const Hash> proof, const Hash& root) {
  if (index >= tree_size || proof.size() > kMerkleProofHashesMax) return false;
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) == 1 || fn == sn) {
      r = NodeHash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size) {
  MANDATE_CHECK(old_size > 0 && old_size <= leaves.size());
  std::vector<Hash> out;
  SubProof(leaves, old_size, true, &out);
  return out;
}

bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                       const Hash& new_root, std::span<const Hash> proof) {
  if (old_size > new_size || proof.size() > kMerkleProofHashesMax) return false;
  if (old_size == new_size) return proof.empty() && old_root == new_root;
  if (old_size == 0) return proof.empty();  // every tree extends the empty one
  std::vector<Hash> path;
  // When the old tree is a perfect subtree of the new one, its root is the path's first hash.
  if (std::has_single_bit(old_size)) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  if (path.empty()) return false;
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0];
  Hash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) == 1 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == old_root && sr == new_root && sn == 0;
}

}  // namespace mandate::audit
