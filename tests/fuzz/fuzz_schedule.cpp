// Pipeline schedule files (parallel::schedule_from_json, as strata-schedule and
// --schedule FILE read them), then the verifier and the simulator on what parses.
#include "fuzz_support.h"
#include "strata/parallel/pipeline/schedule.h"
#include "strata/parallel/pipeline/schedule_json.h"

STRATA_FUZZ_TARGET({
  const std::string text(reinterpret_cast<const char*>(data), size);
  const strata::parallel::PipelineSchedule schedule =
      strata::parallel::schedule_from_json(nlohmann::json::parse(text));
  strata::parallel::verify_schedule(schedule);
  strata::parallel::simulate_schedule(schedule);
})
