#include "mandate/audit/merkle.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mandate/core/crypto.h"

namespace mandate::audit {
namespace {

// --- An independent reference ------------------------------------------------------------
//
// Written straight from RFC 6962 section 2.1 with the hash inputs built as byte strings and
// hashed with core::Sha256 (not Sha256Concat, LeafHash or NodeHash), the split point found
// by doubling rather than bit tricks, and recursion on copies rather than spans, so it
// shares no code with merkle.cc.

std::string Bytes(const Hash& h) {
  return std::string(reinterpret_cast<const char*>(h.data()), h.size());
}

Hash RefLeaf(const std::string& data) { return core::Sha256(std::string(1, '\0') + data); }

Hash RefNode(const Hash& l, const Hash& r) { return core::Sha256("\x01" + Bytes(l) + Bytes(r)); }

size_t RefSplit(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

Hash RefMth(const std::vector<Hash>& leaves) {
  if (leaves.empty()) return core::Sha256("");
  if (leaves.size() == 1) return leaves[0];
  size_t k = RefSplit(leaves.size());
  return RefNode(RefMth({leaves.begin(), leaves.begin() + k}),
                 RefMth({leaves.begin() + k, leaves.end()}));
}

// RFC 6962 section 2.1.1: PATH(m, D[n]).
std::vector<Hash> RefPath(size_t m, const std::vector<Hash>& d) {
  if (d.size() <= 1) return {};
  size_t k = RefSplit(d.size());
  std::vector<Hash> left(d.begin(), d.begin() + k), right(d.begin() + k, d.end());
  std::vector<Hash> out;
  if (m < k) {
    out = RefPath(m, left);
    out.push_back(RefMth(right));
  } else {
    out = RefPath(m - k, right);
    out.push_back(RefMth(left));
  }
  return out;
}

// RFC 6962 section 2.1.2: SUBPROOF(m, D[n], b).
std::vector<Hash> RefSubProof(size_t m, const std::vector<Hash>& d, bool b) {
  if (m == d.size()) return b ? std::vector<Hash>{} : std::vector<Hash>{RefMth(d)};
  size_t k = RefSplit(d.size());
  std::vector<Hash> left(d.begin(), d.begin() + k), right(d.begin() + k, d.end());
  std::vector<Hash> out;
  if (m <= k) {
    out = RefSubProof(m, left, b);
    out.push_back(RefMth(right));
  } else {
    out = RefSubProof(m - k, right, false);
    out.push_back(RefMth(left));
  }
  return out;
}

std::vector<Hash> Leaves(size_t n) {
  std::vector<Hash> out;
  for (size_t i = 0; i < n; ++i) out.push_back(RefLeaf("leaf " + std::to_string(i)));
  return out;
}

Hash Flip(Hash h, size_t byte = 0) {
  h[byte % h.size()] ^= 0x01;
  return h;
}

// --- Hashing -----------------------------------------------------------------------------

TEST(Merkle, LeafNodeAndEmptyHashesAreTheRfc6962Ones) {
  EXPECT_EQ(core::DigestHex(EmptyTreeHash()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // The leaf hash of the empty record, the first RFC 6962 test vector.
  EXPECT_EQ(core::DigestHex(LeafHash("")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  EXPECT_EQ(LeafHash("{\"a\":1}"), RefLeaf("{\"a\":1}"));
  // A leaf may contain NUL bytes; the 0x00 prefix is one byte, not a C string.
  EXPECT_EQ(LeafHash(std::string("a\0b", 3)), RefLeaf(std::string("a\0b", 3)));
  Hash a = RefLeaf("a"), b = RefLeaf("b");
  EXPECT_EQ(NodeHash(a, b), RefNode(a, b));
  EXPECT_NE(NodeHash(a, b), NodeHash(b, a));
  // Domain separation: a node is never the leaf of its children's concatenation.
  EXPECT_NE(NodeHash(a, b), LeafHash(Bytes(a) + Bytes(b)));
}

TEST(Merkle, RootOfMatchesTheRfc6962TestVectors) {
  // The leaves and roots of the RFC 6962 test vectors used by certificate-transparency and
  // trillian; recomputed independently with Python:
  //   def mth(ds): n=len(ds); ... k=largest power of 2 < n;
  //     sha256(b'\x01' + mth(ds[:k]) + mth(ds[k:]))   with leaves sha256(b'\x00' + d)
  const std::vector<std::string> inputs = {
      std::string(""),
      std::string("\x00", 1),
      std::string("\x10"),
      std::string("\x20\x21"),
      std::string("\x30\x31"),
      std::string("\x40\x41\x42\x43"),
      std::string("\x50\x51\x52\x53\x54\x55\x56\x57"),
      std::string("\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"),
  };
  const char* const roots[] = {
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
      "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
      "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
      "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
      "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  };
  std::vector<Hash> leaves;
  MerkleAccumulator acc;
  for (size_t n = 1; n <= inputs.size(); ++n) {
    leaves.push_back(LeafHash(inputs[n - 1]));
    acc.Push(leaves.back());
    EXPECT_EQ(core::DigestHex(RootOf(leaves)), roots[n - 1]) << n << " leaves";
    EXPECT_EQ(core::DigestHex(acc.Root()), roots[n - 1]) << n << " leaves";
  }
}

TEST(Merkle, RootOfMatchesHandComputedTreesOfZeroToEightLeaves) {
  const std::vector<Hash> l = Leaves(8);
  auto N = [](const Hash& a, const Hash& b) { return RefNode(a, b); };
  auto root = [&](size_t n) { return RootOf(std::vector<Hash>(l.begin(), l.begin() + n)); };
  const Hash n01 = N(l[0], l[1]), n23 = N(l[2], l[3]), n45 = N(l[4], l[5]), n67 = N(l[6], l[7]);
  const Hash n0123 = N(n01, n23);
  EXPECT_EQ(root(0), core::Sha256(""));
  EXPECT_EQ(root(1), l[0]);
  EXPECT_EQ(root(2), n01);
  EXPECT_EQ(root(3), N(n01, l[2]));
  EXPECT_EQ(root(4), n0123);
  EXPECT_EQ(root(5), N(n0123, l[4]));
  EXPECT_EQ(root(6), N(n0123, n45));
  EXPECT_EQ(root(7), N(n0123, N(n45, l[6])));
  EXPECT_EQ(root(8), N(n0123, N(n45, n67)));
}

TEST(Merkle, AccumulatorRootEqualsRootOfForEverySizeUpTo300) {
  const std::vector<Hash> leaves = Leaves(300);
  MerkleAccumulator acc;
  EXPECT_EQ(acc.size(), 0u);
  EXPECT_EQ(acc.Root(), EmptyTreeHash());
  for (size_t n = 1; n <= leaves.size(); ++n) {
    acc.Push(leaves[n - 1]);
    ASSERT_EQ(acc.size(), n);
    std::vector<Hash> prefix(leaves.begin(), leaves.begin() + n);
    ASSERT_EQ(acc.Root(), RootOf(prefix)) << n;
    if (n <= 70) {
      ASSERT_EQ(RootOf(prefix), RefMth(prefix)) << n;
    }
  }
  // Root() does not disturb the accumulator.
  EXPECT_EQ(acc.Root(), acc.Root());
  EXPECT_EQ(acc.size(), 300u);
}

// --- Inclusion proofs --------------------------------------------------------------------

TEST(Merkle, InclusionProofVerifiesForEveryIndexAndSizeUpTo64) {
  const std::vector<Hash> all = Leaves(64);
  for (size_t n = 1; n <= 64; ++n) {
    std::vector<Hash> leaves(all.begin(), all.begin() + n);
    const Hash root = RootOf(leaves);
    for (size_t i = 0; i < n; ++i) {
      std::vector<Hash> proof = InclusionProof(leaves, i);
      ASSERT_EQ(proof, RefPath(i, leaves)) << "index " << i << " size " << n;
      ASSERT_TRUE(VerifyInclusion(i, n, leaves[i], proof, root)) << "index " << i << " size " << n;
    }
  }
}

TEST(Merkle, InclusionProofOfTheOnlyLeafIsEmpty) {
  const std::vector<Hash> leaves = Leaves(1);
  EXPECT_TRUE(InclusionProof(leaves, 0).empty());
  EXPECT_TRUE(VerifyInclusion(0, 1, leaves[0], {}, leaves[0]));
  EXPECT_FALSE(VerifyInclusion(0, 1, leaves[0], {}, Flip(leaves[0])));
}

TEST(Merkle, VerifyInclusionRejectsWrongIndexSizeLeafRootAndTamperedProofs) {
  const std::vector<Hash> all = Leaves(65);
  for (size_t n = 1; n <= 64; ++n) {
    std::vector<Hash> leaves(all.begin(), all.begin() + n);
    const Hash root = RootOf(leaves);
    for (size_t i = 0; i < n; ++i) {
      const std::vector<Hash> proof = InclusionProof(leaves, i);
      SCOPED_TRACE("index " + std::to_string(i) + " size " + std::to_string(n));
      // Every other index of the same tree.
      for (size_t j = 0; j < n; ++j) {
        if (j != i) {
          ASSERT_FALSE(VerifyInclusion(j, n, leaves[i], proof, root)) << "as index " << j;
        }
      }
      ASSERT_FALSE(VerifyInclusion(n, n, leaves[i], proof, root));  // index out of range
      ASSERT_FALSE(VerifyInclusion(i, 0, leaves[i], proof, root));
      // Another size: the path of i has another length there, so it cannot be consumed
      // exactly. (With an equal length it may still fold to this root: the root, not the
      // path, is what the signed checkpoint binds to its size.)
      for (size_t m : {n - 1, n + 1, 2 * n}) {
        if (m <= i || m > all.size()) continue;
        std::vector<Hash> other(all.begin(), all.begin() + m);
        if (InclusionProof(other, i).size() != proof.size()) {
          ASSERT_FALSE(VerifyInclusion(i, m, leaves[i], proof, root)) << "as size " << m;
        }
      }
      // Another leaf, another root.
      ASSERT_FALSE(VerifyInclusion(i, n, Flip(leaves[i]), proof, root));
      ASSERT_FALSE(VerifyInclusion(i, n, all[64], proof, root));
      ASSERT_FALSE(VerifyInclusion(i, n, leaves[i], proof, Flip(root, 31)));
      // Every hash of the proof tampered with, one at a time.
      for (size_t k = 0; k < proof.size(); ++k) {
        std::vector<Hash> bad = proof;
        bad[k] = Flip(bad[k], k);
        ASSERT_FALSE(VerifyInclusion(i, n, leaves[i], bad, root)) << "hash " << k;
      }
      // Shortened, extended, reversed.
      if (!proof.empty()) {
        std::vector<Hash> shorter(proof.begin(), proof.end() - 1);
        ASSERT_FALSE(VerifyInclusion(i, n, leaves[i], shorter, root));
      }
      std::vector<Hash> longer = proof;
      longer.push_back(all[64]);
      ASSERT_FALSE(VerifyInclusion(i, n, leaves[i], longer, root));
      if (proof.size() >= 2 && proof.front() != proof.back()) {
        std::vector<Hash> reversed(proof.rbegin(), proof.rend());
        ASSERT_FALSE(VerifyInclusion(i, n, leaves[i], reversed, root));
      }
    }
  }
}

TEST(Merkle, VerifyInclusionRejectsProofsLongerThanTheLimit) {
  std::vector<Hash> proof(kMerkleProofHashesMax + 1, Leaves(1)[0]);
  EXPECT_FALSE(VerifyInclusion(0, UINT64_MAX, Leaves(1)[0], proof, Leaves(1)[0]));
}

// --- Consistency proofs ------------------------------------------------------------------

TEST(Merkle, ConsistencyProofVerifiesForEveryPairOfSizesUpTo64) {
  const std::vector<Hash> all = Leaves(64);
  for (size_t n = 1; n <= 64; ++n) {
    std::vector<Hash> leaves(all.begin(), all.begin() + n);
    const Hash new_root = RootOf(leaves);
    for (size_t m = 1; m <= n; ++m) {
      const Hash old_root = RootOf(std::vector<Hash>(all.begin(), all.begin() + m));
      std::vector<Hash> proof = ConsistencyProof(leaves, m);
      ASSERT_EQ(proof, RefSubProof(m, leaves, true)) << m << " -> " << n;
      if (m == n) {
        ASSERT_TRUE(proof.empty());
      }
      ASSERT_TRUE(VerifyConsistency(m, n, old_root, new_root, proof)) << m << " -> " << n;
    }
    // Every tree extends the empty one, with an empty proof.
    EXPECT_TRUE(VerifyConsistency(0, n, EmptyTreeHash(), new_root, {}));
    EXPECT_FALSE(VerifyConsistency(0, n, EmptyTreeHash(), new_root, std::vector<Hash>{new_root}));
  }
}

TEST(Merkle, VerifyConsistencyRejectsWrongRootsSizesAndTamperedProofs) {
  const std::vector<Hash> all = Leaves(65);
  for (size_t n = 1; n <= 64; ++n) {
    std::vector<Hash> leaves(all.begin(), all.begin() + n);
    const Hash new_root = RootOf(leaves);
    for (size_t m = 1; m <= n; ++m) {
      SCOPED_TRACE(std::to_string(m) + " -> " + std::to_string(n));
      const Hash old_root = RootOf(std::vector<Hash>(all.begin(), all.begin() + m));
      const std::vector<Hash> proof = ConsistencyProof(leaves, m);
      ASSERT_FALSE(VerifyConsistency(m, n, Flip(old_root), new_root, proof));
      ASSERT_FALSE(VerifyConsistency(m, n, old_root, Flip(new_root, 7), proof));
      if (m < n) {
        // The roots swapped, the sizes swapped, a forked new tree (the last leaf replaced).
        ASSERT_FALSE(VerifyConsistency(m, n, new_root, old_root, proof));
        ASSERT_FALSE(VerifyConsistency(n, m, new_root, old_root, proof));
        std::vector<Hash> forked = leaves;
        forked.back() = all[64];
        ASSERT_FALSE(VerifyConsistency(m, n, old_root, RootOf(forked), proof));
        // An old tree that is not a prefix: its first leaf replaced.
        std::vector<Hash> other_old(all.begin(), all.begin() + m);
        other_old.front() = all[64];
        ASSERT_FALSE(VerifyConsistency(m, n, RootOf(other_old), new_root, proof));
      } else {
        ASSERT_FALSE(VerifyConsistency(m, n, old_root, new_root, std::vector<Hash>{all[0]}));
      }
      // Another old size whose proof has another length.
      for (size_t m2 : {m - 1, m + 1}) {
        if (m2 == 0 || m2 > n) continue;
        if (ConsistencyProof(leaves, m2).size() != proof.size()) {
          ASSERT_FALSE(VerifyConsistency(m2, n, old_root, new_root, proof)) << "as " << m2;
        }
      }
      for (size_t k = 0; k < proof.size(); ++k) {
        std::vector<Hash> bad = proof;
        bad[k] = Flip(bad[k], 3 * k);
        ASSERT_FALSE(VerifyConsistency(m, n, old_root, new_root, bad)) << "hash " << k;
      }
      if (!proof.empty()) {
        std::vector<Hash> shorter(proof.begin(), proof.end() - 1);
        ASSERT_FALSE(VerifyConsistency(m, n, old_root, new_root, shorter));
      }
      std::vector<Hash> longer = proof;
      longer.push_back(all[64]);
      ASSERT_FALSE(VerifyConsistency(m, n, old_root, new_root, longer));
    }
  }
  std::vector<Hash> too_long(kMerkleProofHashesMax + 1, all[0]);
  EXPECT_FALSE(VerifyConsistency(1, UINT64_MAX, all[0], all[1], too_long));
}

}  // namespace
}  // namespace mandate::audit
