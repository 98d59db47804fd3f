#pragma once
// Shared by memory_plan.cpp (replay, baselines) and memory_plan_ilp.cpp (ILP,
// divide-and-conquer).

#include <map>
#include <unordered_map>
#include <vector>

#include "strata/accel/memory_plan.h"

namespace strata::accel::detail {

// The graph by index: tensor t's bytes, kind, producing op (-1: none), consuming ops
// (each once); op o's distinct inputs and outputs.
struct PlanProblem {
  explicit PlanProblem(const OpGraph& graph);
  bool starts_offchip(size_t t) const;          // an input or a weight
  std::vector<size_t> working(size_t o) const;  // inputs then outputs

  const OpGraph& graph;
  std::vector<int64_t> bytes;
  std::vector<TensorKind> kind;
  std::vector<int64_t> producer;
  std::vector<std::vector<size_t>> consumers;
  std::vector<std::vector<size_t>> op_inputs, op_outputs;
  std::vector<bool> graph_output;
  std::unordered_map<int64_t, size_t> tensor_at;  // id -> index
};

// The lowest offset where `size` bytes fit among the resident tensors (offset >= 0), or -1.
int64_t first_fit(const std::vector<int64_t>& offset, const std::vector<int64_t>& bytes,
                  int64_t scratchpad, int64_t size);

// The steps that run `order` (op indices) with, while op order[k] runs, exactly the
// tensors of `resident[k]` (tensor index -> offset) on chip: evict what leaves (written
// back when live and without a copy off-chip), load what arrives, place the outputs. A
// tensor that moves is evicted and loaded again.
std::vector<PlanStep> steps_from_residency(const PlanProblem& problem,
                                           const std::vector<size_t>& order,
                                           const std::vector<std::map<size_t, int64_t>>& resident);

MemoryPlan plan_ilp(const OpGraph& graph, int64_t scratchpad, const PlanOptions& options);
MemoryPlan plan_divide_and_conquer(const OpGraph& graph, int64_t scratchpad,
                                   const PlanOptions& options);

}  // namespace strata::accel::detail
