#include "strata/programs/checkpoint_interval.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "strata/core/error.h"

namespace strata::programs {

double daly_interval_seconds(double checkpoint_seconds, double mtbf_seconds) {
  STRATA_CHECK(checkpoint_seconds > 0 && mtbf_seconds > 0,
               "daly_interval_seconds: checkpoint cost and MTBF must be > 0, got ",
               checkpoint_seconds, " and ", mtbf_seconds);
  const double c = checkpoint_seconds, m = mtbf_seconds;
  if (c >= 2 * m) return m;  // failures come faster than checkpoints: Daly's limit
  return std::sqrt(2 * c * m) * (1 + std::sqrt(c / (2 * m)) / 3 + c / (18 * m)) - c;
}

CheckpointInterval choose_checkpoint_interval(const CheckpointCosts& costs) {
  STRATA_CHECK(costs.checkpoint_seconds > 0,
               "checkpoint interval: the checkpoint time must be > 0, got ",
               costs.checkpoint_seconds);
  STRATA_CHECK(costs.step_seconds > 0, "checkpoint interval: the step time must be > 0, got ",
               costs.step_seconds);
  STRATA_CHECK(costs.mtbf_hours_per_node > 0, "--mtbf-hours must be > 0, got ",
               costs.mtbf_hours_per_node);
  STRATA_CHECK(costs.nodes >= 1, "checkpoint interval: nodes must be >= 1, got ", costs.nodes);
  STRATA_CHECK(costs.restart_seconds >= 0,
               "checkpoint interval: the restart time must be >= 0, got ", costs.restart_seconds);
  CheckpointInterval out;
  out.job_mtbf_seconds = costs.mtbf_hours_per_node * 3600 / static_cast<double>(costs.nodes);
  out.seconds = daly_interval_seconds(costs.checkpoint_seconds, out.job_mtbf_seconds);
  const double steps = std::round(out.seconds / costs.step_seconds);
  out.steps = steps >= 1e15 ? static_cast<int64_t>(1e15)
                            : std::max<int64_t>(1, static_cast<int64_t>(steps));
  out.expected_lost_seconds =
      static_cast<double>(out.steps) * costs.step_seconds / 2 + costs.restart_seconds;
  return out;
}

int64_t job_nodes(int world_size) {
  for (const char* name : {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"}) {
    const char* value = std::getenv(name);
    const int64_t local = value ? std::atoll(value) : 0;
    if (local > 0) return (world_size + local - 1) / local;
  }
  return 1;
}

}  // namespace strata::programs
