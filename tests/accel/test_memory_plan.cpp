// The memory planner (issue 20): graphs from JSON and from the simulated device, and the
// plans of every method checked by a replay written here, apart from the planner's own,
// under the contract's semantics (docs/memory_planning.md). On small random graphs of
// equal-sized tensors the ILP's traffic equals an exhaustive search's optimum (with one
// size, any set of tensors that fits by bytes fits in the scratchpad, so the search need
// not place them); on any graph it is never worse than either baseline.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <queue>
#include <random>
#include <set>

#include "error_message.h"
#include "strata/accel/device.h"
#include "strata/accel/memory_plan.h"
#include "strata/accel/to_device.h"

namespace strata::accel {
namespace {

using test_support::error_of;
using test_support::has;

struct Traffic {
  int64_t read = 0, written = 0, compulsory = 0;
};

// The contract's semantics, checked step by step; fails the test (and returns what it
// counted so far) at the first broken rule.
Traffic replay(const OpGraph& g, int64_t S, const MemoryPlan& plan) {
  Traffic out;
  std::map<int64_t, const GraphTensor*> tensor;
  for (const auto& t : g.tensors) tensor[t.id] = &t;
  std::map<int64_t, const GraphOp*> op;
  std::map<int64_t, int> uses_left, producer;
  for (const auto& o : g.ops) {
    op[o.id] = &o;
    for (int64_t t : std::set<int64_t>(o.inputs.begin(), o.inputs.end())) ++uses_left[t];
    for (int64_t t : o.outputs) producer[t] = int(o.id);
  }
  const auto output = [&](int64_t t) {
    return tensor[t]->kind == TensorKind::Output ||
           (tensor[t]->kind == TensorKind::Activation && uses_left.count(t) == 0);
  };
  std::set<int64_t> used;
  for (const auto& o : g.ops) used.insert(o.inputs.begin(), o.inputs.end());
  for (const auto& t : g.tensors)
    if (output(t.id) ||
        ((t.kind == TensorKind::Input || t.kind == TensorKind::Weight) && used.count(t.id)))
      out.compulsory += t.bytes;
  std::map<int64_t, int64_t> at;  // resident tensor -> offset
  std::set<int64_t> offchip, exists, gone, ran;
  for (const auto& t : g.tensors)
    if (t.kind == TensorKind::Input || t.kind == TensorKind::Weight)
      offchip.insert(t.id), exists.insert(t.id);
  EXPECT_EQ(plan.steps.size(), g.ops.size()) << plan.method;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const auto& s = plan.steps[i];
    const std::string where = plan.method + " step " + std::to_string(i);
    if (!op.count(s.op) || ran.count(s.op)) {
      ADD_FAILURE() << where << ": op " << s.op << " unknown or run twice";
      return out;
    }
    const GraphOp& o = *op[s.op];
    for (int64_t t : o.inputs)
      if (!exists.count(t)) ADD_FAILURE() << where << ": input " << t << " not produced yet";
    for (const auto& e : s.evict) {
      if (!at.count(e.tensor)) ADD_FAILURE() << where << ": evicts non-resident " << e.tensor;
      if (e.writeback) out.written += tensor[e.tensor]->bytes, offchip.insert(e.tensor);
      if (!offchip.count(e.tensor))
        ADD_FAILURE() << where << ": drops live tensor " << e.tensor << " with no copy";
      at.erase(e.tensor);
    }
    for (const auto& l : s.load) {
      if (at.count(l.tensor) || !offchip.count(l.tensor) || gone.count(l.tensor))
        ADD_FAILURE() << where << ": bad load of " << l.tensor;
      out.read += tensor[l.tensor]->bytes;
      at[l.tensor] = l.offset;
    }
    for (const auto& p : s.place) {
      if (producer[p.tensor] != s.op || exists.count(p.tensor))
        ADD_FAILURE() << where << ": bad place of " << p.tensor;
      exists.insert(p.tensor);
      at[p.tensor] = p.offset;
    }
    for (const auto* list : {&o.inputs, &o.outputs})
      for (int64_t t : *list)
        if (!at.count(t)) ADD_FAILURE() << where << ": tensor " << t << " not resident";
    for (const auto& [t, offset] : at) {
      if (offset < 0 || offset + tensor[t]->bytes > S)
        ADD_FAILURE() << where << ": tensor " << t << " outside the scratchpad";
      for (const auto& [u, other] : at)
        if (u != t && offset < other + tensor[u]->bytes && other < offset + tensor[t]->bytes)
          ADD_FAILURE() << where << ": tensors " << t << " and " << u << " overlap";
    }
    ran.insert(s.op);
    for (int64_t t : std::set<int64_t>(o.inputs.begin(), o.inputs.end())) --uses_left[t];
    for (const auto* list : {&o.inputs, &o.outputs})
      for (int64_t t : *list) {
        if (uses_left.count(t) && uses_left[t] > 0) continue;
        if (gone.count(t)) continue;
        if (output(t) && !offchip.count(t)) out.written += tensor[t]->bytes;
        offchip.insert(t);
        at.erase(t);
        gone.insert(t);
      }
  }
  return out;
}

void expect_valid(const OpGraph& g, int64_t S, const MemoryPlan& plan) {
  const Traffic t = replay(g, S, plan);
  EXPECT_EQ(plan.offchip_read_bytes, t.read) << plan.method;
  EXPECT_EQ(plan.offchip_write_bytes, t.written) << plan.method;
  EXPECT_EQ(plan.compulsory_bytes, t.compulsory) << plan.method;
  EXPECT_GE(plan.non_compulsory_bytes(), 0) << plan.method;
}

// A NAS-like cell chain: each op reads one or two earlier tensors (skip connections) and
// maybe a weight, and makes one activation; the last is the output.
OpGraph random_graph(std::mt19937& rng, int ops, bool equal_sizes) {
  OpGraph g;
  auto add = [&](TensorKind kind) {
    const int64_t bytes = equal_sizes ? 4 : 4 * int64_t(1 + rng() % 4);
    g.tensors.push_back({int64_t(g.tensors.size()), bytes, kind});
    return int64_t(g.tensors.size()) - 1;
  };
  std::vector<int64_t> made = {add(TensorKind::Input)};
  for (int o = 0; o < ops; ++o) {
    GraphOp op;
    op.id = o;
    op.name = "op" + std::to_string(o);
    op.inputs.push_back(made[made.size() - 1 - rng() % std::min<size_t>(made.size(), 3)]);
    if (rng() % 2 && made.size() > 1) {
      const int64_t skip = made[rng() % made.size()];
      if (skip != op.inputs[0]) op.inputs.push_back(skip);
    }
    if (rng() % 3 == 0) op.inputs.push_back(add(TensorKind::Weight));
    op.outputs.push_back(add(o + 1 == ops ? TensorKind::Output : TensorKind::Activation));
    made.push_back(op.outputs[0]);
    g.ops.push_back(op);
  }
  g.validate("random graph");
  return g;
}

// The least reads + writes over every topological order and every choice of resident
// tensors, with capacity counted in bytes alone (Dijkstra over ops run, resident set and
// which produced tensors have a copy off-chip).
int64_t exhaustive_traffic(const OpGraph& g, int64_t S) {
  const size_t n = g.tensors.size(), m = g.ops.size();
  std::vector<uint32_t> in(m), outs(m);
  std::vector<int> uses(n);
  uint32_t offchip0 = 0, outputs = 0;
  for (size_t o = 0; o < m; ++o) {
    for (int64_t t : g.ops[o].inputs) in[o] |= 1u << t, ++uses[size_t(t)];
    for (int64_t t : g.ops[o].outputs) outs[o] |= 1u << t;
  }
  for (size_t t = 0; t < n; ++t) {
    if (g.tensors[t].kind == TensorKind::Input || g.tensors[t].kind == TensorKind::Weight)
      offchip0 |= 1u << t;
    if (g.is_graph_output(t)) outputs |= 1u << t;
  }
  const auto bytes_of = [&](uint32_t set) {
    int64_t b = 0;
    for (size_t t = 0; t < n; ++t)
      if (set >> t & 1) b += g.tensors[t].bytes;
    return b;
  };
  using State = std::tuple<uint32_t, uint32_t, uint32_t>;  // ran, resident, offchip
  std::map<State, int64_t> best;
  std::priority_queue<std::pair<int64_t, State>, std::vector<std::pair<int64_t, State>>,
                      std::greater<>>
      queue;
  queue.push({0, {0u, 0u, offchip0}});
  while (!queue.empty()) {
    const auto [cost, state] = queue.top();
    queue.pop();
    const auto [ran, resident, offchip] = state;
    if (ran == (1u << m) - 1) return cost;
    if (best.count(state) && best[state] < cost) continue;
    uint32_t exists = offchip0, dead = 0;
    for (size_t o = 0; o < m; ++o)
      if (ran >> o & 1) exists |= outs[o];
    for (size_t t = 0; t < n; ++t) {
      bool live = false;
      for (size_t o = 0; o < m; ++o) live = live || (!(ran >> o & 1) && (in[o] >> t & 1));
      if (!live && (exists >> t & 1)) dead |= 1u << t;
    }
    for (size_t o = 0; o < m; ++o) {
      if ((ran >> o & 1) || (in[o] & ~exists)) continue;
      const uint32_t need = in[o] | outs[o];
      // Optional extras: live tensors that exist and are resident or can be loaded.
      const uint32_t extra = exists & ~dead & ~need & (resident | offchip);
      for (uint32_t keep = extra;; keep = (keep - 1) & extra) {
        const uint32_t now = need | keep;
        if (bytes_of(now) <= S && !(in[o] & ~resident & ~offchip)) {
          const uint32_t loads = now & ~resident & ~outs[o];
          const uint32_t evicted = resident & ~now & ~offchip;
          int64_t c = cost + bytes_of(loads) + bytes_of(evicted);
          uint32_t copy = offchip | evicted;
          uint32_t after = now;
          const uint32_t ran2 = ran | (1u << o);
          for (size_t t = 0; t < n; ++t) {
            if (!(now >> t & 1)) continue;
            bool live = false;
            for (size_t q = 0; q < m; ++q) live = live || (!(ran2 >> q & 1) && (in[q] >> t & 1));
            if (live) continue;
            if ((outputs >> t & 1) && !(copy >> t & 1)) c += g.tensors[t].bytes;
            copy |= 1u << t;
            after &= ~(1u << t);
          }
          const State next{ran2, after, copy};
          if (!best.count(next) || c < best[next]) {
            best[next] = c;
            queue.push({c, next});
          }
        }
        if (keep == 0) break;
      }
    }
  }
  return -1;
}

TEST(MemoryPlanGraph, JsonRoundTripsAndBadGraphsNameTheProblem) {
  std::mt19937 rng(1);
  const OpGraph g = random_graph(rng, 6, false);
  const OpGraph back = OpGraph::from_json(g.to_json(), "g.json");
  EXPECT_EQ(back.to_json(), g.to_json());

  auto j = g.to_json();
  j["ops"][0]["inputs"] = {j["ops"][3]["outputs"][0]};  // op 0 waits for op 3: a cycle
  EXPECT_TRUE(has(error_of([&] { OpGraph::from_json(j, "g.json"); }), "cycle")) << j.dump();
  j = g.to_json();
  j["ops"][2]["inputs"].push_back(99);
  const auto undeclared = error_of([&] { OpGraph::from_json(j, "g.json"); });
  EXPECT_TRUE(has(undeclared, "g.json: op 2") && has(undeclared, "tensor id 99")) << undeclared;
  j = g.to_json();
  j["tensors"][1]["id"] = 0;
  const auto duplicate = error_of([&] { OpGraph::from_json(j, "g.json"); });
  EXPECT_TRUE(has(duplicate, "tensor id 0 is declared twice")) << duplicate;
  j = g.to_json();
  j["tensors"][0]["kind"] = "buffer";
  EXPECT_TRUE(has(error_of([&] { OpGraph::from_json(j, "g.json"); }), "buffer"));
}

TEST(MemoryPlanGraph, ScratchpadBelowTheLargestWorkingSetNamesTheOpAndTheMinimum) {
  OpGraph g;
  g.tensors = {{0, 100, TensorKind::Input},
               {1, 300, TensorKind::Weight},
               {2, 50, TensorKind::Activation},
               {3, 10, TensorKind::Output}};
  g.ops = {{0, "conv1", {0, 1}, {2}}, {1, "head", {2}, {3}}};
  g.validate();
  EXPECT_EQ(minimum_scratchpad(g), 450);
  const auto message = error_of([&] { plan_memory(g, 449, "lru"); });
  EXPECT_TRUE(has(message, "'conv1'") && has(message, "at least 450")) << message;
  EXPECT_NO_THROW(plan_memory(g, 450, "lru"));
  EXPECT_TRUE(has(error_of([&] { plan_memory(g, 450, "fifo"); }), "unknown method"));
}

TEST(MemoryPlanGraph, RecordedForwardAndTrainingStepAreValidGraphs) {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(8, 16), torch::nn::ReLU(),
                              torch::nn::Linear(16, 4));
  to_device(model, device(0));
  const auto x = torch::randn({4, 8}).to(device(0));
  auto recorder = std::make_shared<GraphRecorder>();
  {
    torch::NoGradGuard no_grad;
    RecorderScope scope(recorder);
    model->forward(x);
  }
  const OpGraph forward = recorder->graph();
  EXPECT_NO_THROW(forward.validate());
  int weights = 0, outputs = 0, inputs = 0;
  for (const auto& t : forward.tensors) {
    weights += t.kind == TensorKind::Weight;
    outputs += t.kind == TensorKind::Output;
    inputs += t.kind == TensorKind::Input;
  }
  EXPECT_EQ(weights, 4);  // two weights, two biases
  EXPECT_EQ(inputs, 1);
  EXPECT_EQ(outputs, 1);
  for (const auto& t : forward.tensors)
    if (t.kind == TensorKind::Output) EXPECT_EQ(t.bytes, 4 * 4 * 4);

  // A training step: forward, backward and an SGD update, whose new weights are outputs.
  torch::optim::SGD sgd(model->parameters(), 0.1);
  auto step = std::make_shared<GraphRecorder>();
  {
    RecorderScope scope(step);
    sgd.zero_grad();
    model->forward(x).sum().backward();
    sgd.step();
  }
  const OpGraph train = step->graph();
  EXPECT_NO_THROW(train.validate());
  EXPECT_GT(train.ops.size(), forward.ops.size() * 2);
  outputs = 0;
  for (const auto& t : train.tensors) outputs += t.kind == TensorKind::Output;
  EXPECT_GE(outputs, 4);
  // Short time limits: validity is the point here, not optimality.
  const int64_t S = minimum_scratchpad(train);
  for (const auto& method : memory_plan_methods())
    expect_valid(train, S, plan_memory(train, S, method, PlanOptions().time_limit_seconds(2)));
}

TEST(MemoryPlan, EveryMethodsPlanReplaysValidly) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 12; ++trial) {
    const OpGraph g = random_graph(rng, 4 + trial % 4, false);
    const int64_t S = minimum_scratchpad(g) + 4 * int64_t(rng() % 4);
    for (const auto& method : memory_plan_methods()) {
      SCOPED_TRACE("trial " + std::to_string(trial) + " " + method);
      expect_valid(g, S,
                   plan_memory(g, S, method, PlanOptions().segment_ops(3).time_limit_seconds(2)));
    }
  }
}

TEST(MemoryPlan, BeladyNeverLosesToLruOnAChainWithReuse) {
  // Weights reused every other op: belady keeps the one needed next.
  OpGraph g;
  g.tensors = {{0, 4, TensorKind::Input}, {1, 4, TensorKind::Weight}, {2, 4, TensorKind::Weight}};
  for (int o = 0; o < 6; ++o) {
    g.tensors.push_back({3 + o, 4, o == 5 ? TensorKind::Output : TensorKind::Activation});
    g.ops.push_back({o, "op" + std::to_string(o), {o == 0 ? 0 : 2 + o, 1 + o % 2}, {3 + o}});
  }
  g.validate();
  const auto lru = plan_memory(g, 16, "lru"), belady = plan_memory(g, 16, "belady");
  expect_valid(g, 16, lru);
  expect_valid(g, 16, belady);
  EXPECT_LE(belady.non_compulsory_bytes(), lru.non_compulsory_bytes());
}

TEST(MemoryPlanIlp, EqualsExhaustiveSearchAndBeatsNoBaseline) {
  if (!ilp_available()) GTEST_SKIP() << "built without COIN-OR CBC";
  std::mt19937 rng(3);
  for (int trial = 0; trial < 12; ++trial) {
    const OpGraph g = random_graph(rng, 3 + trial % 3, true);
    const int64_t S = minimum_scratchpad(g) + 4 * int64_t(trial % 2);
    SCOPED_TRACE("trial " + std::to_string(trial) + ": " + g.to_json().dump());
    const MemoryPlan ilp = plan_memory(g, S, "ilp");
    expect_valid(g, S, ilp);
    EXPECT_TRUE(ilp.optimal);
    EXPECT_EQ(ilp.offchip_read_bytes + ilp.offchip_write_bytes, exhaustive_traffic(g, S));
    for (const char* baseline : {"lru", "belady"})
      EXPECT_LE(ilp.non_compulsory_bytes(), plan_memory(g, S, baseline).non_compulsory_bytes());
  }
}

TEST(MemoryPlanIlp, UnavailableWithoutCbcSaysSo) {
  if (ilp_available()) GTEST_SKIP() << "built with COIN-OR CBC";
  std::mt19937 rng(3);
  const OpGraph g = random_graph(rng, 3, true);
  const auto message = error_of([&] { plan_memory(g, 64, "ilp"); });
  EXPECT_TRUE(has(message, "without COIN-OR CBC")) << message;
  EXPECT_NO_THROW(plan_memory(g, 64, "belady"));
}

}  // namespace
}  // namespace strata::accel
