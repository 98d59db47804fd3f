#pragma once
// COSMA-style memory planning for an accelerator's scratchpad (issue 20): which op runs
// when, where each tensor sits in the scratchpad, and which tensor leaves when space runs
// out, so that as few bytes as possible move to and from off-chip memory.
//
//   auto recorder = std::make_shared<strata::accel::GraphRecorder>();
//   { strata::accel::RecorderScope scope(recorder); model->forward(x_on_device); }
//   const strata::accel::OpGraph graph = recorder->graph();
//   const auto plan = strata::accel::plan_memory(graph, 64 << 10, "belady");
//
// A plan is a list of steps, one per op, in a topological order. Semantics (the contract
// of `strata-accel memory-plan --json`, docs/memory_planning.md): inputs and weights start
// off-chip. Before a step's op runs, `evict` frees tensors (a live activation or graph
// output with no copy off-chip is written back: writeback true, its bytes written),
// `load` reads tensors that have a copy off-chip to an offset (their bytes read), `place`
// allocates the op's outputs. Then every input and output of the op is resident, in byte
// intervals [offset, offset + bytes) that do not overlap and lie inside [0, S). After the
// op, a tensor whose consumers have all run is freed; a graph output (kind output, or a
// produced tensor nobody consumes) is written back when freed unless it has a copy
// off-chip. Compulsory bytes: the used inputs and weights plus the graph outputs.

#include <torch/arg.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "strata/accel/op_recorder.h"

namespace strata::accel {

enum class TensorKind { Input, Weight, Activation, Output };
std::string to_string(TensorKind kind);
// "input", "weight", "activation" or "output"; anything else raises naming `where`.
TensorKind parse_tensor_kind(const std::string& text, const std::string& where);

struct GraphTensor {
  int64_t id = 0;
  int64_t bytes = 0;
  TensorKind kind = TensorKind::Activation;
};

struct GraphOp {
  int64_t id = 0;
  std::string name;
  std::vector<int64_t> inputs;   // tensor ids
  std::vector<int64_t> outputs;  // tensor ids
};

// A DAG of ops over tensors. Every activation and output is produced by exactly one op;
// inputs and weights by none.
struct OpGraph {
  std::vector<GraphTensor> tensors;
  std::vector<GraphOp> ops;

  // Raises one strata::Error line, starting with `source`, naming the first problem: a
  // duplicate tensor or op id, a tensor id used but not declared, a tensor produced twice
  // or an input/weight produced by an op, an activation nobody produces, a cycle (naming
  // an op on it).
  void validate(const std::string& source = "graph") const;
  // The `graph` object of the contract. from_json reads that object, or a whole document
  // holding it as "graph" (the output of strata-accel memory-plan --json), and validates.
  nlohmann::ordered_json to_json() const;
  static OpGraph from_json(const nlohmann::json& graph, const std::string& source);

  // Index of the tensor / op with this id (raises when there is none).
  size_t tensor_index(int64_t id) const;
  size_t op_index(int64_t id) const;
  // Op indices in a topological order that keeps the listed order where it can (the
  // program order when the list is one); raises on a cycle.
  std::vector<size_t> program_order(const std::string& source = "graph") const;
  // Distinct input and output bytes of op `index`: the scratchpad it needs at least.
  int64_t working_set(size_t index) const;
  // True for an output, and for an activation that no op consumes.
  bool is_graph_output(size_t tensor_index) const;
  // The used inputs and weights plus the graph outputs.
  int64_t compulsory_bytes() const;
};

// Builds an OpGraph from the simulated device's reports: a tensor is a version of a
// storage (views share it; an op that writes a storage, in place or into reused memory,
// makes a new version). A storage first seen as an input is a weight when to_device tagged
// it as a layer's parameter or buffer, else an input; a produced tensor nobody consumes is
// an output. Op names are "<layer>/<aten op>" when the layer is known.
class GraphRecorder : public OpRecorder {
 public:
  void on_op(const DeviceOp& op) override;
  void on_transfer(const DeviceTransfer&) override {}
  OpGraph graph() const;

 private:
  int64_t tensor_for_input(const DeviceTensorRef& ref);  // mutex_ held
  mutable std::mutex mutex_;
  OpGraph graph_;
  std::map<uint64_t, int64_t> current_;  // storage -> tensor id of its latest version
};

struct PlanEviction {
  int64_t tensor = 0;
  bool writeback = false;
};
struct PlanPlacement {
  int64_t tensor = 0;
  int64_t offset = 0;
};
struct PlanStep {
  int64_t op = 0;
  std::vector<PlanEviction> evict;
  std::vector<PlanPlacement> load;
  std::vector<PlanPlacement> place;
};

struct MemoryPlan {
  std::string method;
  bool optimal = false;  // proven optimal (only the ILP proves it)
  double solve_seconds = 0;
  int64_t offchip_read_bytes = 0;
  int64_t offchip_write_bytes = 0;
  int64_t compulsory_bytes = 0;
  std::vector<PlanStep> steps;

  // Reads and writes beyond the compulsory bytes.
  int64_t non_compulsory_bytes() const {
    return offchip_read_bytes + offchip_write_bytes - compulsory_bytes;
  }
  nlohmann::ordered_json to_json() const;
};

struct PlanOptions {
  TORCH_ARG(double, time_limit_seconds) = 60;  // ilp, and each segment of divide-and-conquer
  TORCH_ARG(int64_t, segment_ops) = 8;         // divide-and-conquer: ops per segment
};

// The largest working set of any op; below it no plan exists.
int64_t minimum_scratchpad(const OpGraph& graph);
// Raises "--scratchpad S bytes: op 'NAME' (id I) needs W bytes (its inputs and outputs);
// the scratchpad must be at least W" when S is below minimum_scratchpad.
void check_scratchpad(const OpGraph& graph, int64_t scratchpad_bytes);

// The methods this build offers, in the order `strata-accel memory-plan` runs them by
// default: ilp (only when built with COIN-OR CBC), lru, belady.
std::vector<std::string> memory_plan_methods();
// Whether the ilp method was built (COIN-OR CBC found at configure time).
bool ilp_available();

// A plan for `graph` with `scratchpad_bytes` by `method` (one of memory_plan_methods()).
// Its byte counts are the replay's. Raises on an unknown or unavailable method and on a
// scratchpad below the minimum.
MemoryPlan plan_memory(const OpGraph& graph, int64_t scratchpad_bytes, const std::string& method,
                       const PlanOptions& options = {});

// Runs `plan` on `graph` under the semantics above and fills in its byte counts; raises
// naming the step and the rule a plan breaks. The planner calls it on every plan it makes.
void replay_plan(const OpGraph& graph, int64_t scratchpad_bytes, MemoryPlan& plan);

}  // namespace strata::accel
