#include "strata/parallel/pipeline/schedule_json.h"

#include <array>
#include <limits>

#include "strata/core/error.h"
#include "strata/core/json_fields.h"

namespace strata::parallel {
namespace {

constexpr std::array<PipelineOp, 10> kOps = {
    PipelineOp::Forward,        PipelineOp::Backward,       PipelineOp::BackwardInput,
    PipelineOp::BackwardWeight, PipelineOp::SendActivation, PipelineOp::RecvActivation,
    PipelineOp::SendGradient,   PipelineOp::RecvGradient,   PipelineOp::AllReduceGradients,
    PipelineOp::OptimizerStep};

PipelineOp op_from_name(const std::string& name, const std::string& where) {
  for (PipelineOp op : kOps) {
    if (to_string(op) == name) return op;
  }
  STRATA_FAIL(where, ": unknown op '", name,
              "' (expected F, BW, B, W, send-act, recv-act, send-grad, recv-grad, "
              "all-reduce-grads or optimizer-step)");
}

// Counts and indices are ints in PipelineSchedule: read as int64 and range-checked, never
// cut to 32 bits (4294967297 micro-batches is not 1).
constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

// An optional instruction field: `fallback` when absent, else an index from 0.
int index_field(const core::JsonField& item, const char* key, int fallback) {
  return item.has(key) ? static_cast<int>(item[key].integer(0, kMaxInt)) : fallback;
}

}  // namespace

nlohmann::json schedule_to_json(const PipelineSchedule& schedule) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const auto& program : schedule.ranks) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& in : program) {
      nlohmann::json item = {{"op", to_string(in.op)}};
      if (in.stage >= 0) item["stage"] = in.stage;
      if (in.micro_batch >= 0) item["mb"] = in.micro_batch;
      if (in.peer >= 0) item["peer"] = in.peer;
      list.push_back(std::move(item));
    }
    ranks.push_back(std::move(list));
  }
  return {{"name", schedule.name},
          {"num_ranks", schedule.num_ranks},
          {"num_stages", schedule.num_stages},
          {"num_micro_batches", schedule.num_micro_batches},
          {"ranks", std::move(ranks)}};
}

PipelineSchedule schedule_from_json(const nlohmann::json& json, const std::string& source) {
  const core::JsonField root(json, source);
  root.object();
  PipelineSchedule schedule;
  schedule.name = root.has("name") ? root["name"].string() : "custom";
  schedule.num_ranks = static_cast<int>(root["num_ranks"].integer(1, kMaxInt));
  schedule.num_stages = static_cast<int>(root["num_stages"].integer(1, kMaxInt));
  schedule.num_micro_batches = static_cast<int>(root["num_micro_batches"].integer(1, kMaxInt));
  for (const core::JsonField& list : root["ranks"].elements()) {
    std::vector<PipelineInstruction> program;
    for (const core::JsonField& item : list.elements()) {
      item.object();
      PipelineInstruction in;
      in.op = op_from_name(item["op"].string(), item["op"].name());
      in.stage = index_field(item, "stage", -1);
      in.micro_batch = index_field(item, "mb", -1);
      in.peer = index_field(item, "peer", -1);
      program.push_back(in);
    }
    schedule.ranks.push_back(std::move(program));
  }
  return schedule;
}

}  // namespace strata::parallel
