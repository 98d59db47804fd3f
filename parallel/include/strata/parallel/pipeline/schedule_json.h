#pragma once
// Pipeline schedules as JSON, so that a user can write a schedule by hand (or with another
// tool) and put it through the same verifier and simulator as the generated ones:
//
//   {"name": "mine", "num_ranks": 2, "num_stages": 2, "num_micro_batches": 1,
//    "ranks": [[{"op": "F", "stage": 0, "mb": 0},
//               {"op": "send-act", "stage": 0, "mb": 0, "peer": 1}, ...], ...]}
//
// "op" is the short name to_string(PipelineOp) gives: F, BW, B, W, send-act, recv-act,
// send-grad, recv-grad, all-reduce-grads, optimizer-step.

#include <nlohmann/json.hpp>

#include <string>

#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel {

nlohmann::json schedule_to_json(const PipelineSchedule& schedule);
// Throws strata::Error naming `source` (the file) and the field at fault (e.g.
// "s.json: field 'ranks[1][4].op': unknown op 'G'", "s.json: field 'num_micro_batches': got
// 4294967297, expected an integer from 1 to 2147483647"). Counts must be at least 1 and
// indices at least 0, all within an int; verify_schedule checks the meaning.
PipelineSchedule schedule_from_json(const nlohmann::json& json,
                                    const std::string& source = "pipeline schedule");

}  // namespace strata::parallel
