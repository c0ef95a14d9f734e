// Matching many byte-string patterns at once, in one pass over the text (Aho-Corasick), for
// the secret scrubber (include/mandate/broker/credentials.h). Time is linear in the text plus
// the number of positions at which some pattern ends, whatever the patterns (no backtracking,
// no per-pattern pass); building is linear in the total size of the patterns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mandate::broker::internal {

struct Pattern {
  std::string bytes;  // non-empty
  // How many bytes next to a match the caller may widen it by, on each side. The matcher only
  // carries these numbers to the Hit; what a widening means is the caller's business.
  uint8_t slack_left = 0;
  uint8_t slack_right = 0;
};

// Everything that ends at one text position, summed up for a caller that widens each match
// by up to its pattern's slacks and takes the union: [begin, end) is the union of the
// matches themselves (the longest pattern ending at `end` covers the shorter ones), and the
// widened matches reach at most slack_left bytes before `begin` and slack_right bytes past
// `end`.
struct Hit {
  size_t begin = 0;
  size_t end = 0;  // one past the last matched byte
  uint8_t slack_left = 0;
  uint8_t slack_right = 0;
};

// Immutable once built; safe to use from any thread. Copyable (plain vectors).
class MultiMatcher {
 public:
  MultiMatcher() = default;  // matches nothing
  // Empty patterns are a programming error (MANDATE_CHECK). Duplicates are fine: the largest
  // slacks win. The patterns must total fewer than 2^32 - 1 bytes (MANDATE_CHECK).
  explicit MultiMatcher(const std::vector<Pattern>& patterns);

  bool empty() const { return fail_.empty(); }

  // Calls on_hit(const Hit&) -> bool once per text position at which at least one pattern
  // ends, in increasing `end` order, and stops early when it returns false. Keeps nothing
  // per hit, so memory does not grow with the text however many hits it has.
  template <typename OnHit>
  void Scan(std::string_view text, OnHit&& on_hit) const {
    if (empty()) return;
    uint32_t state = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      state = Step(state, static_cast<uint8_t>(text[i]));
      const Output& out = output_[state];
      if (out.size != 0 && !on_hit(Hit{i + 1 - out.size, i + 1, out.slack_left, out.slack_right})) {
        return;
      }
    }
  }
  // Scan's hits, collected (for tests and small texts: one Hit per matching position).
  std::vector<Hit> FindAll(std::string_view text) const;
  // Whether any pattern occurs in the text; stops at the first.
  bool ContainsAny(std::string_view text) const;

 private:
  struct Output {
    uint32_t size = 0;  // of the longest pattern ending here; 0: none does
    uint8_t slack_left = 0;
    uint8_t slack_right = 0;
  };

  uint32_t Step(uint32_t state, uint8_t byte) const;

  // Invariant: states are numbered in breadth-first order from the root, 0, so a state's
  // failure link is numbered lower than the state itself.
  uint32_t root_next_[256] = {};       // the root's transitions, dense: it is entered most
  std::vector<uint32_t> edges_begin_;  // state s's edges are [edges_begin_[s], edges_begin_[s+1])
  std::vector<uint8_t> edge_bytes_;    // sorted within each state
  std::vector<uint32_t> edge_targets_;
  std::vector<uint32_t> fail_;  // longest proper suffix of the state's string that is a state
  std::vector<Output> output_;  // see Hit
};

}  // namespace mandate::broker::internal
