// COSMA's joint formulation as an integer linear program, solved with COIN-OR CBC, and
// the divide-and-conquer heuristic that solves segments of a large graph one at a time.
//
// Steps k = 0..N-1, one op each. Binaries: x[o][k] op o runs at step k; r[t][k] tensor t
// is resident while step k's op runs; l[t][k] t is loaded before step k; w[t][k] a
// produced t is written back before step k; z[s][t][k] s lies below t at step k. Reals:
// a[t][k] t's offset at step k. Constraints: every op once, every step one op, a consumer
// after its producers; the op's inputs and outputs resident; a tensor becomes resident
// only by being loaded or produced; a produced tensor is loaded only after a write-back,
// written back only while resident; a resident tensor keeps its offset unless reloaded;
// two resident tensors do not overlap. Objective: bytes loaded plus activation bytes
// written back (a graph output's write is compulsory, wherever it happens). Sizes are
// divided by their greatest common divisor so that the offsets stay small integers.

#include <chrono>
#include <cmath>
#include <numeric>
#include <set>

#include "memory_plan_internal.h"
#include "strata/core/error.h"

#ifdef STRATA_HAVE_CBC
#include <Cbc_C_Interface.h>
#endif

namespace strata::accel {

bool ilp_available() {
#ifdef STRATA_HAVE_CBC
  return true;
#else
  return false;
#endif
}

namespace detail {
namespace {

MemoryPlan better_baseline(const OpGraph& graph, int64_t scratchpad) {
  MemoryPlan lru = plan_memory(graph, scratchpad, "lru");
  MemoryPlan belady = plan_memory(graph, scratchpad, "belady");
  return lru.non_compulsory_bytes() < belady.non_compulsory_bytes() ? lru : belady;
}

// An ILP solution: the order and, per step, the resident tensors and their offsets.
struct Schedule {
  bool found = false;
  bool optimal = false;
  std::vector<size_t> order;
  std::vector<std::map<size_t, int64_t>> resident;
};

#ifdef STRATA_HAVE_CBC

// Beyond this many variables CBC does not finish in minutes: divide-and-conquer's domain.
constexpr size_t kMaxIlpColumns = 200'000;

struct Ilp {
  std::vector<double> lb, ub, obj;
  std::vector<char> integer;
  struct Row {
    std::vector<int> cols;
    std::vector<double> coefs;
    char sense;
    double rhs;
  };
  std::vector<Row> rows;

  int column(double lower, double upper, double cost, bool binary) {
    lb.push_back(lower);
    ub.push_back(upper);
    obj.push_back(cost);
    integer.push_back(binary ? 1 : 0);
    return int(lb.size()) - 1;
  }
  int binary(double cost = 0) { return column(0, 1, cost, true); }
  void row(std::vector<int> cols, std::vector<double> coefs, char sense, double rhs) {
    rows.push_back({std::move(cols), std::move(coefs), sense, rhs});
  }
};

// The steps op o can take in any topological order: after all its ancestors, before all
// its descendants. A tensor can be on chip only from its producer's (or first consumer's)
// earliest step to its last consumer's latest: variables outside these windows are 0 and
// are not made, which keeps a chain-like graph's ILP close to linear in its size.
struct Windows {
  std::vector<size_t> op_lo, op_hi, lo, hi;
};

Windows step_windows(const PlanProblem& p) {
  const size_t m = p.op_inputs.size(), n = p.bytes.size();
  std::vector<std::vector<bool>> anc(m, std::vector<bool>(m));
  const std::vector<size_t> order = p.graph.program_order();
  for (size_t o : order)
    for (size_t t : p.op_inputs[o])
      if (p.producer[t] >= 0) {
        const size_t q = size_t(p.producer[t]);
        anc[o][q] = true;
        for (size_t a = 0; a < m; ++a)
          if (anc[q][a]) anc[o][a] = true;
      }
  Windows w;
  w.op_lo.assign(m, 0);
  w.op_hi.assign(m, m - 1);
  for (size_t o = 0; o < m; ++o)
    for (size_t a = 0; a < m; ++a)
      if (anc[o][a]) ++w.op_lo[o], --w.op_hi[a];
  w.lo.assign(n, m);
  w.hi.assign(n, 0);
  for (size_t t = 0; t < n; ++t) {
    if (p.producer[t] >= 0) {
      w.lo[t] = w.op_lo[size_t(p.producer[t])];
      w.hi[t] = w.op_hi[size_t(p.producer[t])];
    }
    for (size_t c : p.consumers[t]) {
      if (p.producer[t] < 0) w.lo[t] = std::min(w.lo[t], w.op_lo[c]);
      w.hi[t] = std::max(w.hi[t], w.op_hi[c]);
    }
  }
  return w;
}

// `initial`: tensors on chip before the first step, at these offsets (they need no load
// while they stay); `outgoing`: tensors that later ops need, each charged 2 x its bytes
// (written back, read again) unless it is still on chip after the last step.
// divide-and-conquer passes both from one segment to the next; the ilp neither.
Schedule solve(const PlanProblem& p, int64_t scratchpad, double seconds,
               const std::map<size_t, int64_t>& initial = {},
               const std::set<size_t>& outgoing = {}) {
  const size_t n_ops = p.op_inputs.size(), n = p.bytes.size();
  std::vector<size_t> used;  // tensors some op reads or writes
  for (size_t t = 0; t < n; ++t)
    if (p.producer[t] >= 0 || !p.consumers[t].empty()) used.push_back(t);
  int64_t unit = scratchpad;
  for (size_t t : used) unit = std::gcd(unit, p.bytes[t]);
  const double S = double(scratchpad / unit);
  std::vector<double> size(n);
  for (size_t t : used) size[t] = double(p.bytes[t] / unit);
  Windows win = step_windows(p);
  const size_t K = n_ops;
  for (const auto& [t, offset] : initial) win.lo[t] = 0;
  for (size_t t : outgoing) win.hi[t] = K - 1;
  // Column indices; -1 where the variable is 0 (outside its window).
  using Grid = std::vector<std::vector<int>>;
  Grid x(n_ops, std::vector<int>(K, -1)), r(n, std::vector<int>(K, -1)), l = r, w = r, a = r;
  const auto in = [](const std::vector<int>& v, size_t k) { return k < v.size() && v[k] >= 0; };

  Ilp ilp;
  for (size_t o = 0; o < n_ops; ++o)
    for (size_t k = win.op_lo[o]; k <= win.op_hi[o]; ++k) x[o][k] = ilp.binary();
  for (size_t t : used) {
    const bool activation = p.kind[t] == TensorKind::Activation && !p.graph_output[t];
    for (size_t k = win.lo[t]; k <= win.hi[t]; ++k) {
      r[t][k] = ilp.binary();
      l[t][k] = ilp.binary(size[t]);
      if (p.producer[t] >= 0 && k > win.lo[t]) w[t][k] = ilp.binary(activation ? size[t] : 0);
      a[t][k] = ilp.column(0, S - size[t], 0, false);
    }
  }
  for (size_t t : outgoing) ilp.obj[size_t(r[t][K - 1])] -= 2 * size[t];
  STRATA_CHECK(ilp.lb.size() <= kMaxIlpColumns, "--methods ilp: the graph's ILP has more than ",
               kMaxIlpColumns, " variables before placement (", n_ops,
               " ops); use divide-and-conquer, which solves it in segments");
  const auto sum_row = [&](const std::vector<std::pair<int, double>>& terms, char sense,
                           double rhs) {
    std::vector<int> cols;
    std::vector<double> coefs;
    for (const auto& [c, v] : terms)
      if (c >= 0) cols.push_back(c), coefs.push_back(v);
    ilp.row(std::move(cols), std::move(coefs), sense, rhs);
  };
  for (size_t o = 0; o < n_ops; ++o) {
    std::vector<std::pair<int, double>> terms;
    for (size_t k = 0; k < K; ++k) terms.emplace_back(x[o][k], 1);
    sum_row(terms, 'E', 1);
  }
  for (size_t k = 0; k < K; ++k) {
    std::vector<std::pair<int, double>> terms;
    for (size_t o = 0; o < n_ops; ++o) terms.emplace_back(x[o][k], 1);
    sum_row(terms, 'E', 1);
  }
  // A consumer runs after its producer: sum k x[c][k] - sum k x[p][k] >= 1.
  for (size_t t : used) {
    if (p.producer[t] < 0) continue;
    for (size_t c : p.consumers[t]) {
      std::vector<std::pair<int, double>> terms;
      for (size_t k = 0; k < K; ++k) {
        terms.emplace_back(x[c][k], double(k));
        terms.emplace_back(x[size_t(p.producer[t])][k], -double(k));
      }
      sum_row(terms, 'G', 1);
    }
  }
  for (size_t o = 0; o < n_ops; ++o)
    for (size_t t : p.working(o))
      for (size_t k = win.op_lo[o]; k <= win.op_hi[o]; ++k)
        sum_row({{r[t][k], 1}, {x[o][k], -1}}, 'G', 0);
  for (size_t t : used) {
    const bool produced = p.producer[t] >= 0;
    for (size_t k = win.lo[t]; k <= win.hi[t]; ++k) {
      const int before = k > 0 ? r[t][k - 1] : -1;
      const auto start = initial.find(t);
      if (k == 0 && start != initial.end()) {
        // On chip from the start: in place unless reloaded.
        const double offset = double(start->second / unit);
        sum_row({{a[t][k], 1}, {r[t][k], S}, {l[t][k], -S}}, 'L', offset + S);
        sum_row({{a[t][k], -1}, {r[t][k], S}, {l[t][k], -S}}, 'L', S - offset);
      } else {
        // Resident only if it was, or is loaded, or is produced now.
        sum_row({{r[t][k], 1},
                 {l[t][k], -1},
                 {before, -1},
                 {produced ? x[size_t(p.producer[t])][k] : -1, -1}},
                'L', 0);
      }
      sum_row({{l[t][k], 1}, {r[t][k], -1}}, 'L', 0);
      if (produced) {
        // Loaded only after a write-back (at this step or before), written back only
        // while resident.
        std::vector<std::pair<int, double>> terms = {{l[t][k], 1}};
        for (size_t j = win.lo[t]; j <= k; ++j) terms.emplace_back(w[t][j], -1);
        sum_row(terms, 'L', 0);
        if (in(w[t], k)) sum_row({{w[t][k], 1}, {before, -1}}, 'L', 0);
      }
      // Kept in place unless reloaded: |a[k] - a[k-1]| <= S (2 - r[k-1] - r[k] + l[k]).
      if (before >= 0)
        for (double sign : {1.0, -1.0})
          sum_row({{a[t][k], sign}, {a[t][k - 1], -sign}, {before, S}, {r[t][k], S}, {l[t][k], -S}},
                  'L', 2 * S);
    }
  }
  // No overlap: with z = 1 s below t, a_s + size_s <= a_t + S (1 - z) + S (2 - r_s - r_t);
  // with z = 0 t below s.
  for (size_t k = 0; k < K; ++k)
    for (size_t i = 0; i < used.size(); ++i)
      for (size_t j = i + 1; j < used.size(); ++j) {
        const size_t s = used[i], t = used[j];
        if (!in(r[s], k) || !in(r[t], k)) continue;
        const int z = ilp.binary();
        sum_row({{a[s][k], 1}, {a[t][k], -1}, {z, S}, {r[s][k], S}, {r[t][k], S}}, 'L',
                3 * S - size[s]);
        sum_row({{a[t][k], 1}, {a[s][k], -1}, {z, -S}, {r[s][k], S}, {r[t][k], S}}, 'L',
                2 * S - size[t]);
      }
  STRATA_CHECK(ilp.lb.size() <= 4 * kMaxIlpColumns, "--methods ilp: the graph's ILP has ",
               ilp.lb.size(), " variables (", n_ops,
               " ops), more than CBC solves in minutes; use divide-and-conquer, which solves "
               "it in segments");

  Cbc_Model* model = Cbc_newModel();
  for (size_t c = 0; c < ilp.lb.size(); ++c)
    Cbc_addCol(model, "", ilp.lb[c], ilp.ub[c], ilp.obj[c], ilp.integer[c], 0, nullptr, nullptr);
  for (const auto& row : ilp.rows)
    Cbc_addRow(model, "", int(row.cols.size()), row.cols.data(), row.coefs.data(), row.sense,
               row.rhs);
  Cbc_setObjSense(model, 1);
  Cbc_setLogLevel(model, 0);
  Cbc_setMaximumSeconds(model, seconds);
  Cbc_solve(model);
  Schedule out;
  out.found = Cbc_numberSavedSolutions(model) > 0 || Cbc_isProvenOptimal(model);
  out.optimal = Cbc_isProvenOptimal(model);
  if (out.found) {
    const double* v = Cbc_getColSolution(model);
    for (size_t k = 0; k < K; ++k) {
      for (size_t o = 0; o < n_ops; ++o)
        if (in(x[o], k) && v[x[o][k]] > 0.5) out.order.push_back(o);
      std::map<size_t, int64_t> on_chip;
      for (size_t t : used)
        if (in(r[t], k) && v[r[t][k]] > 0.5) on_chip[t] = std::llround(v[a[t][k]]) * unit;
      out.resident.push_back(std::move(on_chip));
    }
    out.found = out.order.size() == K;
  }
  Cbc_deleteModel(model);
  return out;
}

#endif

}  // namespace

MemoryPlan plan_ilp(const OpGraph& graph, int64_t scratchpad, const PlanOptions& options) {
  MemoryPlan fallback = better_baseline(graph, scratchpad);
#ifdef STRATA_HAVE_CBC
  const PlanProblem p(graph);
  const Schedule s = solve(p, scratchpad, options.time_limit_seconds());
  if (s.found) {
    MemoryPlan plan;
    plan.method = "ilp";
    plan.optimal = s.optimal;
    plan.steps = steps_from_residency(p, s.order, s.resident);
    replay_plan(graph, scratchpad, plan);
    // Stopped by the time limit with a worse incumbent: the baseline is the answer.
    if (plan.non_compulsory_bytes() <= fallback.non_compulsory_bytes()) return plan;
  }
#else
  (void)options;
#endif
  fallback.optimal = false;
  return fallback;
}

MemoryPlan plan_divide_and_conquer(const OpGraph& graph, int64_t scratchpad,
                                   const PlanOptions& options) {
  const std::vector<size_t> order = graph.program_order();
  const size_t segment = size_t(std::max<int64_t>(options.segment_ops(), 1));
  if (order.size() <= segment) return plan_ilp(graph, scratchpad, options);
#ifdef STRATA_HAVE_CBC
  const PlanProblem p(graph);
  std::vector<size_t> full_order;
  std::vector<std::map<size_t, int64_t>> resident;
  for (size_t begin = 0; begin < order.size(); begin += segment) {
    const size_t end = std::min(order.size(), begin + segment);
    // The segment as a graph of its own: what earlier segments produced comes in (on
    // chip where the previous segment left it, else from off-chip), what later segments
    // consume goes out (better still on chip at the end).
    const std::set<size_t> inside(order.begin() + long(begin), order.begin() + long(end));
    const std::set<size_t> later(order.begin() + long(end), order.end());
    OpGraph sub;
    std::set<size_t> tensors;
    for (size_t o : inside) {
      sub.ops.push_back(graph.ops[o]);
      for (size_t t : p.working(o)) tensors.insert(t);
    }
    for (size_t t : tensors) {
      GraphTensor g = graph.tensors[t];
      if (p.producer[t] >= 0 && !inside.count(size_t(p.producer[t]))) g.kind = TensorKind::Input;
      sub.tensors.push_back(g);
    }
    const PlanProblem q(sub);
    std::map<size_t, int64_t> initial;
    std::set<size_t> outgoing;
    for (size_t i = 0; i < sub.tensors.size(); ++i) {
      const size_t t = p.tensor_at.at(sub.tensors[i].id);
      if (!resident.empty() && resident.back().count(t) && q.kind[i] == TensorKind::Input &&
          p.producer[t] >= 0)
        initial[i] = resident.back().at(t);
      for (size_t c : p.consumers[t])
        if (later.count(c) && q.producer[i] >= 0) outgoing.insert(i);
    }
    const Schedule s = solve(q, scratchpad, options.time_limit_seconds(), initial, outgoing);
    STRATA_CHECK(s.found, "--methods divide-and-conquer: no plan for the segment of ops ", begin,
                 "..", end - 1, " within --time-limit ", options.time_limit_seconds(),
                 " s; raise it or lower --segment-ops");
    for (size_t k = 0; k < s.order.size(); ++k) {
      full_order.push_back(graph.op_index(sub.ops[s.order[k]].id));
      std::map<size_t, int64_t> on_chip;
      for (const auto& [i, offset] : s.resident[k])
        on_chip[p.tensor_at.at(sub.tensors[i].id)] = offset;
      resident.push_back(std::move(on_chip));
    }
  }
  MemoryPlan plan;
  plan.method = "divide-and-conquer";
  plan.steps = steps_from_residency(p, full_order, resident);
  // Time-limited segments can stitch into worse than a baseline: then the baseline.
  replay_plan(graph, scratchpad, plan);
  MemoryPlan fallback = better_baseline(graph, scratchpad);
  return plan.non_compulsory_bytes() <= fallback.non_compulsory_bytes() ? plan : fallback;
#else
  (void)options;
  return better_baseline(graph, scratchpad);
#endif
}

}  // namespace detail
}  // namespace strata::accel
