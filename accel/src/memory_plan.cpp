// Memory plans: the replay that counts a plan's traffic, the program-order baselines (lru,
// belady) and the method dispatch. The ILP and divide-and-conquer are in memory_plan_ilp.cpp.

#include "strata/accel/memory_plan.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <set>

#include "memory_plan_internal.h"
#include "strata/core/error.h"

namespace strata::accel {

nlohmann::ordered_json MemoryPlan::to_json() const {
  nlohmann::ordered_json out;
  out["method"] = method;
  out["optimal"] = optimal;
  out["solve_seconds"] = solve_seconds;
  out["offchip_read_bytes"] = offchip_read_bytes;
  out["offchip_write_bytes"] = offchip_write_bytes;
  out["compulsory_bytes"] = compulsory_bytes;
  out["steps"] = nlohmann::ordered_json::array();
  for (const auto& s : steps) {
    nlohmann::ordered_json step;
    step["op"] = s.op;
    step["evict"] = nlohmann::ordered_json::array();
    for (const auto& e : s.evict)
      step["evict"].push_back({{"tensor", e.tensor}, {"writeback", e.writeback}});
    for (const char* key : {"load", "place"}) {
      step[key] = nlohmann::ordered_json::array();
      for (const auto& p : key[0] == 'l' ? s.load : s.place)
        step[key].push_back({{"tensor", p.tensor}, {"offset", p.offset}});
    }
    out["steps"].push_back(std::move(step));
  }
  return out;
}

namespace detail {

PlanProblem::PlanProblem(const OpGraph& g) : graph(g) {
  const size_t n = g.tensors.size();
  bytes.resize(n);
  kind.resize(n);
  producer.assign(n, -1);
  consumers.resize(n);
  for (size_t t = 0; t < n; ++t) {
    bytes[t] = g.tensors[t].bytes;
    kind[t] = g.tensors[t].kind;
    tensor_at[g.tensors[t].id] = t;
  }
  op_inputs.resize(g.ops.size());
  op_outputs.resize(g.ops.size());
  for (size_t o = 0; o < g.ops.size(); ++o) {
    for (int64_t id : g.ops[o].inputs) {
      const size_t t = tensor_at.at(id);
      if (std::count(op_inputs[o].begin(), op_inputs[o].end(), t) == 0) {
        op_inputs[o].push_back(t);
        consumers[t].push_back(o);
      }
    }
    for (int64_t id : g.ops[o].outputs) {
      const size_t t = tensor_at.at(id);
      op_outputs[o].push_back(t);
      producer[t] = int64_t(o);
    }
  }
  graph_output.resize(n);
  for (size_t t = 0; t < n; ++t)
    graph_output[t] = kind[t] == TensorKind::Output ||
                      (kind[t] == TensorKind::Activation && consumers[t].empty());
}

bool PlanProblem::starts_offchip(size_t t) const {
  return kind[t] == TensorKind::Input || kind[t] == TensorKind::Weight;
}

std::vector<size_t> PlanProblem::working(size_t o) const {
  std::vector<size_t> w = op_inputs[o];
  w.insert(w.end(), op_outputs[o].begin(), op_outputs[o].end());
  return w;
}

}  // namespace detail

int64_t minimum_scratchpad(const OpGraph& graph) {
  int64_t most = 0;
  for (size_t o = 0; o < graph.ops.size(); ++o) most = std::max(most, graph.working_set(o));
  return most;
}

void check_scratchpad(const OpGraph& graph, int64_t scratchpad_bytes) {
  size_t largest = 0;
  for (size_t o = 1; o < graph.ops.size(); ++o)
    if (graph.working_set(o) > graph.working_set(largest)) largest = o;
  if (graph.ops.empty()) return;
  const int64_t need = graph.working_set(largest);
  STRATA_CHECK(need <= scratchpad_bytes, "--scratchpad ", scratchpad_bytes, " bytes: op '",
               graph.ops[largest].name, "' (id ", graph.ops[largest].id, ") needs ", need,
               " bytes for its inputs and outputs; the scratchpad must be at least ", need,
               " bytes");
}

void replay_plan(const OpGraph& graph, int64_t scratchpad_bytes, MemoryPlan& plan) {
  const detail::PlanProblem p(graph);
  const size_t n = p.bytes.size();
  std::vector<int64_t> offset(n, -1), remaining(n);
  std::vector<bool> copy(n), produced(n), freed(n), done(graph.ops.size());
  for (size_t t = 0; t < n; ++t) {
    copy[t] = produced[t] = p.starts_offchip(t);
    remaining[t] = int64_t(p.consumers[t].size());
  }
  int64_t read = 0, written = 0;
  STRATA_CHECK(plan.steps.size() == graph.ops.size(), "plan '", plan.method,
               "': ", plan.steps.size(), " steps, expected one per op (", graph.ops.size(), ")");
  const auto tensor = [&](int64_t id, const std::string& at) {
    auto it = p.tensor_at.find(id);
    STRATA_CHECK(it != p.tensor_at.end(), at, ": tensor ", id, " is not in the graph");
    return it->second;
  };
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const PlanStep& step = plan.steps[i];
    const std::string at = "plan '" + plan.method + "' step " + std::to_string(i);
    const size_t o = graph.op_index(step.op);
    STRATA_CHECK(!done[o], at, ": op ", step.op, " runs a second time");
    for (const auto& e : step.evict) {
      const size_t t = tensor(e.tensor, at);
      STRATA_CHECK(offset[t] >= 0, at, ": evicts tensor ", e.tensor, ", which is not resident");
      if (e.writeback) {
        written += p.bytes[t];
        copy[t] = true;
      }
      STRATA_CHECK(copy[t], at, ": evicts live tensor ", e.tensor,
                   " without writing it back, and it has no copy off-chip");
      offset[t] = -1;
    }
    const auto put = [&](const PlanPlacement& pl, size_t t) {
      STRATA_CHECK(pl.offset >= 0 && pl.offset + p.bytes[t] <= scratchpad_bytes, at, ": tensor ",
                   pl.tensor, " at [", pl.offset, ", ", pl.offset + p.bytes[t],
                   ") is outside the scratchpad [0, ", scratchpad_bytes, ")");
      offset[t] = pl.offset;
    };
    for (const auto& l : step.load) {
      const size_t t = tensor(l.tensor, at);
      STRATA_CHECK(offset[t] < 0 && !freed[t] && produced[t] && copy[t], at, ": loads tensor ",
                   l.tensor, ", which is resident, freed, not yet produced or not off-chip");
      read += p.bytes[t];
      put(l, t);
    }
    for (const auto& pl : step.place) {
      const size_t t = tensor(pl.tensor, at);
      STRATA_CHECK(p.producer[t] == int64_t(o) && !produced[t], at, ": places tensor ", pl.tensor,
                   ", which is not an output of op ", step.op);
      produced[t] = true;
      put(pl, t);
    }
    for (size_t t : p.working(o))
      STRATA_CHECK(offset[t] >= 0, at, ": op ", step.op, " runs without tensor ",
                   graph.tensors[t].id, " resident");
    std::vector<std::pair<int64_t, size_t>> live;
    for (size_t t = 0; t < n; ++t)
      if (offset[t] >= 0) live.emplace_back(offset[t], t);
    std::sort(live.begin(), live.end());
    for (size_t k = 1; k < live.size(); ++k) {
      const size_t a = live[k - 1].second, b = live[k].second;
      STRATA_CHECK(offset[a] + p.bytes[a] <= offset[b], at, ": tensors ", graph.tensors[a].id,
                   " and ", graph.tensors[b].id, " overlap in the scratchpad");
    }
    done[o] = true;
    for (size_t t : p.op_inputs[o]) --remaining[t];
    for (size_t t : p.working(o)) {
      if (remaining[t] > 0 || freed[t]) continue;
      if (p.graph_output[t] && !copy[t]) {
        written += p.bytes[t];
        copy[t] = true;
      }
      offset[t] = -1;
      freed[t] = true;
    }
  }
  plan.offchip_read_bytes = read;
  plan.offchip_write_bytes = written;
  plan.compulsory_bytes = graph.compulsory_bytes();
}

namespace {

// Program order, first-fit placement, and a replacement policy: `victim` picks, among the
// resident tensors the current op does not use, the one to evict (scores: highest wins).
MemoryPlan plan_in_program_order(
    const OpGraph& graph, int64_t scratchpad,
    const std::function<int64_t(size_t tensor, size_t position)>& score) {
  const detail::PlanProblem p(graph);
  const size_t n = p.bytes.size();
  const std::vector<size_t> order = graph.program_order();
  std::vector<int64_t> offset(n, -1), remaining(n);
  std::vector<bool> copy(n);
  for (size_t t = 0; t < n; ++t) {
    copy[t] = p.starts_offchip(t);
    remaining[t] = int64_t(p.consumers[t].size());
  }
  MemoryPlan plan;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t o = order[k];
    PlanStep step;
    step.op = graph.ops[o].id;
    const std::vector<size_t> working = p.working(o);
    const auto evict = [&](size_t t) {
      step.evict.push_back({graph.tensors[t].id, !copy[t]});
      copy[t] = true;
      offset[t] = -1;
    };
    std::vector<size_t> pending;
    for (size_t t : working)
      if (offset[t] < 0) pending.push_back(t);
    std::stable_sort(pending.begin(), pending.end(),
                     [&](size_t a, size_t b) { return p.bytes[a] > p.bytes[b]; });
    bool packed = false;
    for (size_t t : pending) {
      int64_t at = -1;
      while ((at = detail::first_fit(offset, p.bytes, scratchpad, p.bytes[t])) < 0) {
        int64_t best = std::numeric_limits<int64_t>::min();
        size_t victim = n;
        for (size_t r = 0; r < n; ++r) {
          if (offset[r] < 0 || std::count(working.begin(), working.end(), r)) continue;
          const int64_t s = score(r, k);
          if (s > best) best = s, victim = r;
        }
        if (victim == n) break;
        evict(victim);
      }
      if (at < 0) {
        packed = true;
        break;
      }
      offset[t] = at;
    }
    if (packed) {
      // Only the op's own tensors are left, scattered so that the rest does not fit
      // in one piece: evict them too and lay the working set out from offset 0.
      for (size_t t : pending) offset[t] = -1;
      for (size_t t = 0; t < n; ++t)
        if (offset[t] >= 0) evict(t);
      int64_t next = 0;
      for (size_t t : working) offset[t] = next, next += p.bytes[t];
      pending = working;
    }
    for (size_t t : pending) {
      const bool output = p.producer[t] == int64_t(o);
      (output ? step.place : step.load).push_back({graph.tensors[t].id, offset[t]});
    }
    for (size_t t : p.op_inputs[o]) --remaining[t];
    for (size_t t : working)
      if (remaining[t] == 0) offset[t] = -1;  // freed (written back if an output)
    for (size_t t : p.op_outputs[o])
      if (remaining[t] == 0) copy[t] = true;
    plan.steps.push_back(std::move(step));
  }
  return plan;
}

MemoryPlan plan_lru(const OpGraph& graph, int64_t scratchpad) {
  std::vector<int64_t> last_used(graph.tensors.size(), -1);
  const detail::PlanProblem p(graph);
  const auto order = graph.program_order();
  std::vector<size_t> position(graph.ops.size());
  for (size_t k = 0; k < order.size(); ++k) position[order[k]] = k;
  return plan_in_program_order(graph, scratchpad, [&](size_t t, size_t k) {
    // The last op before position k that used t (its producer, or a consumer).
    int64_t last = p.producer[t] >= 0 ? int64_t(position[size_t(p.producer[t])]) : -1;
    for (size_t c : p.consumers[t])
      if (position[c] < k) last = std::max(last, int64_t(position[c]));
    return -last;
  });
}

MemoryPlan plan_belady(const OpGraph& graph, int64_t scratchpad) {
  const detail::PlanProblem p(graph);
  const auto order = graph.program_order();
  std::vector<size_t> position(graph.ops.size());
  for (size_t k = 0; k < order.size(); ++k) position[order[k]] = k;
  return plan_in_program_order(graph, scratchpad, [&](size_t t, size_t k) {
    int64_t next = std::numeric_limits<int64_t>::max();
    for (size_t c : p.consumers[t])
      if (position[c] >= k) next = std::min(next, int64_t(position[c]));
    return next;
  });
}

}  // namespace

namespace detail {

int64_t first_fit(const std::vector<int64_t>& offset, const std::vector<int64_t>& bytes,
                  int64_t scratchpad, int64_t size) {
  std::vector<std::pair<int64_t, int64_t>> used;
  for (size_t t = 0; t < offset.size(); ++t)
    if (offset[t] >= 0) used.emplace_back(offset[t], offset[t] + bytes[t]);
  std::sort(used.begin(), used.end());
  int64_t start = 0;
  for (const auto& [begin, end] : used) {
    if (begin - start >= size) return start;
    start = std::max(start, end);
  }
  return scratchpad - start >= size ? start : -1;
}

std::vector<PlanStep> steps_from_residency(const PlanProblem& p, const std::vector<size_t>& order,
                                           const std::vector<std::map<size_t, int64_t>>& resident) {
  const size_t n = p.bytes.size();
  std::vector<int64_t> offset(n, -1), remaining(n);
  std::vector<bool> copy(n), available(n), freed(n);
  for (size_t t = 0; t < n; ++t) {
    copy[t] = available[t] = p.starts_offchip(t);
    remaining[t] = int64_t(p.consumers[t].size());
  }
  std::vector<PlanStep> steps;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t o = order[k];
    PlanStep step;
    step.op = p.graph.ops[o].id;
    const auto& want = resident[k];
    for (size_t t = 0; t < n; ++t) {
      if (offset[t] < 0) continue;
      auto it = want.find(t);
      if (it != want.end() && it->second == offset[t]) continue;
      step.evict.push_back({p.graph.tensors[t].id, !copy[t]});
      copy[t] = true;
      offset[t] = -1;
    }
    for (const auto& [t, at] : want) {
      const bool output = p.producer[t] == int64_t(o);
      if (offset[t] >= 0 || freed[t] || (!available[t] && !output)) continue;
      if (!output && !copy[t]) continue;  // never written back: cannot come back
      offset[t] = at;
      (output ? step.place : step.load).push_back({p.graph.tensors[t].id, at});
      available[t] = true;
    }
    for (size_t t : p.op_inputs[o]) --remaining[t];
    for (size_t t : p.working(o)) {
      if (remaining[t] > 0) continue;
      if (p.graph_output[t]) copy[t] = true;
      offset[t] = -1;
      freed[t] = true;
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace detail

std::vector<std::string> memory_plan_methods() {
  std::vector<std::string> methods;
  if (ilp_available()) methods.push_back("ilp");
  methods.push_back("lru");
  methods.push_back("belady");
  if (ilp_available()) methods.push_back("divide-and-conquer");
  return methods;
}

MemoryPlan plan_memory(const OpGraph& graph, int64_t scratchpad_bytes, const std::string& method,
                       const PlanOptions& options) {
  check_scratchpad(graph, scratchpad_bytes);
  const auto start = std::chrono::steady_clock::now();
  MemoryPlan plan;
  if (method == "lru") {
    plan = plan_lru(graph, scratchpad_bytes);
  } else if (method == "belady") {
    plan = plan_belady(graph, scratchpad_bytes);
  } else if (method == "ilp" || method == "divide-and-conquer") {
    STRATA_CHECK(ilp_available(), "--methods ", method,
                 ": unavailable, this strata was built without COIN-OR CBC (install "
                 "coinor-libcbc-dev and rebuild); available: lru, belady");
    plan = method == "ilp" ? detail::plan_ilp(graph, scratchpad_bytes, options)
                           : detail::plan_divide_and_conquer(graph, scratchpad_bytes, options);
  } else {
    std::string known;
    for (const auto& m : memory_plan_methods()) known += (known.empty() ? "" : ", ") + m;
    STRATA_FAIL("--methods ", method, ": unknown method, expected one of ", known);
  }
  plan.method = method;
  plan.solve_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  replay_plan(graph, scratchpad_bytes, plan);
  return plan;
}

}  // namespace strata::accel
