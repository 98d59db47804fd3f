#include "strata/parallel/pipeline/schedule_json.h"

#include <array>

#include "strata/core/error.h"

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

int int_field(const nlohmann::json& object, const char* key, const std::string& where,
              int fallback) {
  if (!object.contains(key)) return fallback;
  const auto& value = object.at(key);
  STRATA_CHECK(value.is_number_integer(), where, ".", key, ": got ", value.dump(),
               ", expected an integer");
  return value.get<int>();
}

int required_int(const nlohmann::json& object, const char* key, const std::string& where) {
  STRATA_CHECK(object.contains(key), where, ": missing field '", key, "'");
  return int_field(object, key, where, 0);
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

PipelineSchedule schedule_from_json(const nlohmann::json& json) {
  STRATA_CHECK(json.is_object(), "pipeline schedule: got ", json.type_name(),
               ", expected a JSON object");
  PipelineSchedule schedule;
  schedule.name = json.value("name", "custom");
  schedule.num_ranks = required_int(json, "num_ranks", "pipeline schedule");
  schedule.num_stages = required_int(json, "num_stages", "pipeline schedule");
  schedule.num_micro_batches = required_int(json, "num_micro_batches", "pipeline schedule");
  STRATA_CHECK(json.contains("ranks") && json.at("ranks").is_array(),
               "pipeline schedule: missing array 'ranks'");
  const auto& ranks = json.at("ranks");
  for (size_t r = 0; r < ranks.size(); ++r) {
    const std::string list_where = "ranks[" + std::to_string(r) + "]";
    STRATA_CHECK(ranks[r].is_array(), list_where, ": got ", ranks[r].type_name(),
                 ", expected an array of instructions");
    std::vector<PipelineInstruction> program;
    for (size_t i = 0; i < ranks[r].size(); ++i) {
      const auto& item = ranks[r][i];
      const std::string where = list_where + "[" + std::to_string(i) + "]";
      STRATA_CHECK(item.is_object() && item.contains("op") && item.at("op").is_string(), where,
                   ": got ", item.dump(), ", expected an object with a string 'op'");
      PipelineInstruction in;
      in.op = op_from_name(item.at("op").get<std::string>(), where + ".op");
      in.stage = int_field(item, "stage", where, -1);
      in.micro_batch = int_field(item, "mb", where, -1);
      in.peer = int_field(item, "peer", where, -1);
      program.push_back(in);
    }
    schedule.ranks.push_back(std::move(program));
  }
  return schedule;
}

}  // namespace strata::parallel
