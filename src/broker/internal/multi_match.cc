#include "broker/internal/multi_match.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "mandate/core/check.h"

namespace mandate::broker::internal {
namespace {

constexpr uint32_t kNoState = std::numeric_limits<uint32_t>::max();

struct TrieNode {
  std::vector<std::pair<uint8_t, uint32_t>> next;  // sorted by byte
  uint32_t size = 0;
  uint8_t slack_left = 0;
  uint8_t slack_right = 0;
};

uint32_t Child(const std::vector<TrieNode>& trie, uint32_t node, uint8_t byte) {
  const auto& next = trie[node].next;
  auto it = std::lower_bound(
      next.begin(), next.end(), byte,
      [](const std::pair<uint8_t, uint32_t>& e, uint8_t b) { return e.first < b; });
  return it != next.end() && it->first == byte ? it->second : kNoState;
}

// Folds what a state inherits through its failure link (the patterns ending at a proper
// suffix of its string, all shorter) into what ends at the state itself; see Hit.
void Inherit(const TrieNode& from, TrieNode* into) {
  if (from.size == 0) return;
  if (into->size == 0) {  // no pattern ends at the state itself (its edges stay)
    into->size = from.size;
    into->slack_left = from.slack_left;
    into->slack_right = from.slack_right;
    return;
  }
  // Invariant: into->size > from.size, so the difference of the reaches fits a slack.
  uint64_t reach =
      std::max(uint64_t{into->size} + into->slack_left, uint64_t{from.size} + from.slack_left);
  into->slack_left = static_cast<uint8_t>(reach - into->size);
  into->slack_right = std::max(into->slack_right, from.slack_right);
}

}  // namespace

MultiMatcher::MultiMatcher(const std::vector<Pattern>& patterns) {
  if (patterns.empty()) return;
  uint64_t total_bytes = 0;
  for (const Pattern& p : patterns) {
    MANDATE_CHECK(!p.bytes.empty());
    total_bytes += p.bytes.size();
  }
  // State numbers, and kNoState, must fit in uint32_t.
  MANDATE_CHECK(total_bytes < kNoState - 1);

  std::vector<TrieNode> trie(1);
  for (const Pattern& p : patterns) {
    uint32_t node = 0;
    for (char ch : p.bytes) {
      uint8_t b = static_cast<uint8_t>(ch);
      uint32_t next = Child(trie, node, b);
      if (next == kNoState) {
        next = static_cast<uint32_t>(trie.size());
        trie.emplace_back();
        auto& edges = trie[node].next;
        edges.insert(std::lower_bound(edges.begin(), edges.end(), std::make_pair(b, uint32_t{0})),
                     {b, next});
      }
      node = next;
    }
    TrieNode& end = trie[node];
    end.size = static_cast<uint32_t>(p.bytes.size());
    end.slack_left = std::max(end.slack_left, p.slack_left);
    end.slack_right = std::max(end.slack_right, p.slack_right);
  }

  // Breadth-first: failure links (a state's link is shallower, so already final when used)
  // and the renumbering that the Invariant in the header states.
  std::vector<uint32_t> order;
  order.reserve(trie.size());
  order.push_back(0);
  std::vector<uint32_t> fail(trie.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) {
    uint32_t u = order[i];
    for (const auto& [b, v] : trie[u].next) {
      order.push_back(v);
      if (u != 0) {
        uint32_t f = fail[u];
        while (true) {
          uint32_t t = Child(trie, f, b);
          if (t != kNoState) {
            fail[v] = t;
            break;
          }
          if (f == 0) break;  // fail[v] stays the root
          f = fail[f];
        }
      }
      Inherit(trie[fail[v]], &trie[v]);
    }
  }

  std::vector<uint32_t> renumbered(trie.size());
  for (size_t i = 0; i < order.size(); ++i) renumbered[order[i]] = static_cast<uint32_t>(i);
  edges_begin_.reserve(trie.size() + 1);
  edge_bytes_.reserve(trie.size() - 1);
  edge_targets_.reserve(trie.size() - 1);
  fail_.reserve(trie.size());
  output_.reserve(trie.size());
  for (uint32_t old : order) {
    const TrieNode& n = trie[old];
    edges_begin_.push_back(static_cast<uint32_t>(edge_bytes_.size()));
    for (const auto& [b, v] : n.next) {
      edge_bytes_.push_back(b);
      edge_targets_.push_back(renumbered[v]);
    }
    fail_.push_back(renumbered[fail[old]]);
    output_.push_back(Output{n.size, n.slack_left, n.slack_right});
  }
  edges_begin_.push_back(static_cast<uint32_t>(edge_bytes_.size()));
  for (const auto& [b, v] : trie[0].next) root_next_[b] = renumbered[v];
}

uint32_t MultiMatcher::Step(uint32_t state, uint8_t byte) const {
  // Each failure step makes the state shallower and each byte deepens it by at most one, so
  // the loop runs O(1) times per byte amortized over a scan.
  while (state != 0) {
    auto first = edge_bytes_.begin() + edges_begin_[state];
    auto last = edge_bytes_.begin() + edges_begin_[state + 1];
    auto it = std::lower_bound(first, last, byte);
    if (it != last && *it == byte)
      return edge_targets_[static_cast<size_t>(it - edge_bytes_.begin())];
    state = fail_[state];
  }
  return root_next_[byte];
}

std::vector<Hit> MultiMatcher::FindAll(std::string_view text) const {
  std::vector<Hit> hits;
  Scan(text, [&](const Hit& h) {
    hits.push_back(h);
    return true;
  });
  return hits;
}

bool MultiMatcher::ContainsAny(std::string_view text) const {
  bool found = false;
  Scan(text, [&](const Hit&) {
    found = true;
    return false;
  });
  return found;
}

}  // namespace mandate::broker::internal
