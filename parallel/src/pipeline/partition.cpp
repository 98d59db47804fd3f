// Partitioning: the exact min-max split, the memory model, describe() and splitting a
// Sequential. Profiling is in partition_profile.cpp.
#include "strata/parallel/pipeline/partition.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <limits>
#include <sstream>

#include "strata/core/error.h"
#include "strata/core/layer_partition.h"

namespace strata::parallel {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
// partition_rank_balanced searches every split up to this many.
constexpr double kMaxRankBalancedSplits = 2e5;

void check_layers(const std::vector<LayerProfile>& layers) {
  STRATA_CHECK(!layers.empty(),
               "cannot partition an empty model: got 0 layers, expected at least 1");
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerProfile& l = layers[i];
    const auto where = [&] { return detail::concat("layer ", i, " ('", l.name, "') "); };
    STRATA_CHECK(l.parameters >= 0, where(), "parameters: got ", l.parameters, ", expected >= 0");
    STRATA_CHECK(l.parameter_bytes >= 0, where(), "parameter_bytes: got ", l.parameter_bytes,
                 ", expected >= 0");
    STRATA_CHECK(l.time >= 0 && std::isfinite(l.time), where(), "time: got ", l.time,
                 ", expected a finite value >= 0");
    STRATA_CHECK(l.activation_bytes >= 0, where(), "activation_bytes: got ", l.activation_bytes,
                 ", expected >= 0");
  }
}

void check_stages(int64_t layers, int stages) {
  STRATA_CHECK(stages >= 1, "pipeline stages: got ", stages, ", expected at least 1");
  STRATA_CHECK(stages <= layers, "cannot split ", layers, " layers into ", stages,
               " stages: every stage needs at least one layer");
}

void check_memory(const MemoryModel& memory, int64_t stages) {
  const auto& in_flight = memory.in_flight();
  STRATA_CHECK(in_flight.empty() || static_cast<int64_t>(in_flight.size()) == stages,
               "memory model in_flight: got counts for ", in_flight.size(), " stages, expected ",
               stages, " (or none: 1 per stage)");
  for (size_t s = 0; s < in_flight.size(); ++s)
    STRATA_CHECK(in_flight[s] >= 0, "memory model in_flight[", s, "]: got ", in_flight[s],
                 ", expected >= 0");
  STRATA_CHECK(memory.optimizer_state_factor() >= 0, "memory model optimizer_state_factor: got ",
               memory.optimizer_state_factor(), ", expected >= 0");
}

// Every check a split of `layers` into `stages` under `memory` needs; returns the layers.
int64_t check_request(const std::vector<LayerProfile>& layers, int stages,
                      const MemoryModel& memory) {
  check_layers(layers);
  const int64_t n = static_cast<int64_t>(layers.size());
  check_stages(n, stages);
  check_memory(memory, stages);
  return n;
}

// Sums over a run of layers in O(1), so that the dynamic program is O(K n^2).
class LayerSums {
 public:
  explicit LayerSums(const std::vector<LayerProfile>& layers) {
    const size_t n = layers.size();
    parameters_.assign(n + 1, 0);
    parameter_bytes_.assign(n + 1, 0);
    activation_bytes_.assign(n + 1, 0);
    time_.assign(n + 1, 0);
    for (size_t i = 0; i < n; ++i) {
      parameters_[i + 1] = parameters_[i] + layers[i].parameters;
      parameter_bytes_[i + 1] = parameter_bytes_[i] + layers[i].parameter_bytes;
      activation_bytes_[i + 1] = activation_bytes_[i] + layers[i].activation_bytes;
      time_[i + 1] = time_[i] + layers[i].time;
    }
  }
  int64_t parameters(int64_t b, int64_t e) const { return parameters_[e] - parameters_[b]; }
  int64_t parameter_bytes(int64_t b, int64_t e) const {
    return parameter_bytes_[e] - parameter_bytes_[b];
  }
  int64_t activation_bytes(int64_t b, int64_t e) const {
    return activation_bytes_[e] - activation_bytes_[b];
  }
  // Clamped: prefix differences of non-negative times can round below zero.
  double time(int64_t b, int64_t e) const { return std::max(0.0, time_[e] - time_[b]); }

 private:
  std::vector<int64_t> parameters_, parameter_bytes_, activation_bytes_;
  std::vector<double> time_;
};

int64_t memory_of(const LayerSums& sums, int64_t b, int64_t e, int64_t stage,
                  const MemoryModel& memory) {
  const auto& in_flight = memory.in_flight();
  const int64_t held = in_flight.empty() ? 1 : in_flight.at(stage);
  const double state =
      static_cast<double>(sums.parameter_bytes(b, e)) * (2.0 + memory.optimizer_state_factor());
  return static_cast<int64_t>(std::llround(state)) + sums.activation_bytes(b, e) * held;
}

// The exact min-max program is core's (layer_partition.h), shared with accel's splitter
// and the adaptive rebalancer; the earliest cut among ties keeps splits reproducible.
std::vector<int64_t> min_max_split(int64_t n, int64_t k, const core::StageCostFunction& cost) {
  return core::min_max_stage_begins(n, k, cost, core::PartitionTies::EarliestCut);
}

PipelinePartition make_partition(const std::vector<LayerProfile>& layers,
                                 const std::vector<int64_t>& begins, const MemoryModel& memory) {
  const LayerSums sums(layers);
  const int64_t n = static_cast<int64_t>(layers.size());
  PipelinePartition partition;
  for (size_t s = 0; s < begins.size(); ++s) {
    StagePlan stage;
    stage.begin = begins[s];
    stage.end = s + 1 < begins.size() ? begins[s + 1] : n;
    for (int64_t i = stage.begin; i < stage.end; ++i) stage.layer_names.push_back(layers[i].name);
    stage.parameters = sums.parameters(stage.begin, stage.end);
    stage.time = sums.time(stage.begin, stage.end);
    stage.memory_bytes = memory_of(sums, stage.begin, stage.end, s, memory);
    partition.stages.push_back(std::move(stage));
  }
  return partition;
}

std::string layer_range(const StagePlan& stage) {
  const auto& names = stage.layer_names;
  if (names.size() == 1) return names.front();
  return detail::concat(names.front(), "..", names.back(), " (", names.size(), ")");
}

}  // namespace

std::vector<int64_t> gpipe_in_flight(int stages, int micro_batches) {
  STRATA_CHECK(stages >= 1, "pipeline stages: got ", stages, ", expected at least 1");
  STRATA_CHECK(micro_batches >= 1, "micro-batches: got ", micro_batches, ", expected at least 1");
  return std::vector<int64_t>(stages, micro_batches);
}

std::vector<int64_t> one_f_one_b_in_flight(int stages, int micro_batches) {
  STRATA_CHECK(stages >= 1, "pipeline stages: got ", stages, ", expected at least 1");
  STRATA_CHECK(micro_batches >= 1, "micro-batches: got ", micro_batches, ", expected at least 1");
  std::vector<int64_t> held(stages);
  for (int s = 0; s < stages; ++s) held[s] = std::min(stages - s, micro_batches);
  return held;
}

int64_t stage_memory_bytes(const std::vector<LayerProfile>& layers, int64_t begin, int64_t end,
                           int64_t stage, const MemoryModel& memory) {
  STRATA_CHECK(0 <= begin && begin < end && end <= static_cast<int64_t>(layers.size()),
               "stage layers: got [", begin, ", ", end, "), expected a non-empty range in [0, ",
               layers.size(), "]");
  STRATA_CHECK(memory.in_flight().empty() ||
                   (0 <= stage && stage < static_cast<int64_t>(memory.in_flight().size())),
               "stage: got ", stage, ", expected one of the ", memory.in_flight().size(),
               " stages of the memory model");
  return memory_of(LayerSums(layers), begin, end, stage, memory);
}

std::vector<int64_t> PipelinePartition::balance() const {
  std::vector<int64_t> counts;
  for (const StagePlan& s : stages) counts.push_back(s.end - s.begin);
  return counts;
}

int64_t PipelinePartition::slowest_stage() const {
  int64_t slowest = 0;
  for (size_t s = 1; s < stages.size(); ++s)
    if (stages[s].time > stages[slowest].time) slowest = static_cast<int64_t>(s);
  return slowest;
}

std::string format_megabytes(int64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / 1e6 << " MB";
  return out.str();
}

std::string PipelinePartition::describe() const {
  std::ostringstream out;
  int64_t layers = 0, largest = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    layers += stages[s].end - stages[s].begin;
    if (stages[s].memory_bytes > stages[largest].memory_bytes) largest = static_cast<int64_t>(s);
  }
  out << "pipeline partition: " << layers << " layers into " << stages.size() << " stages";
  if (memory_limit_bytes > 0)
    out << ", at most " << format_megabytes(memory_limit_bytes) << " each";
  out << "\n";
  out << std::left << std::setw(7) << "stage" << std::setw(22) << "layers" << std::right
      << std::setw(12) << "parameters" << std::setw(12) << "time (ms)" << std::setw(12) << "memory"
      << "\n";
  for (size_t s = 0; s < stages.size(); ++s) {
    const StagePlan& st = stages[s];
    std::ostringstream time;
    time << std::fixed << std::setprecision(3) << st.time * 1e3;
    out << std::left << std::setw(7) << s << std::setw(22) << layer_range(st) << std::right
        << std::setw(12) << st.parameters << std::setw(12) << time.str() << std::setw(12)
        << format_megabytes(st.memory_bytes) << "\n";
  }
  if (stages.empty()) return out.str();
  const int64_t slowest = slowest_stage();
  out << "slowest stage: " << slowest << " (" << std::fixed << std::setprecision(3)
      << stages[slowest].time * 1e3 << " ms per micro-batch); most memory: stage " << largest
      << " (" << format_megabytes(stages[largest].memory_bytes) << ")\n";
  return out.str();
}

PipelinePartition partition_explicit(const std::vector<LayerProfile>& layers,
                                     const std::vector<int64_t>& balance,
                                     const MemoryModel& memory) {
  check_layers(layers);
  const int64_t n = static_cast<int64_t>(layers.size());
  STRATA_CHECK(!balance.empty(), "pipeline balance: got no stages, expected at least 1");
  check_stages(n, static_cast<int>(balance.size()));
  check_memory(memory, static_cast<int64_t>(balance.size()));
  std::vector<int64_t> begins;
  int64_t next = 0;
  for (size_t s = 0; s < balance.size(); ++s) {
    STRATA_CHECK(balance[s] >= 1, "pipeline balance[", s, "]: got ", balance[s],
                 " layers, expected at least 1");
    begins.push_back(next);
    next += balance[s];
  }
  STRATA_CHECK(next == n, "pipeline balance: got ", next, " layers in all, expected ", n,
               " (the model's layers)");
  return make_partition(layers, begins, memory);
}

PipelinePartition partition_balanced(const std::vector<LayerProfile>& layers, int stages,
                                     BalanceBy by, const MemoryModel& memory) {
  const int64_t n = check_request(layers, stages, memory);
  const LayerSums sums(layers);
  const core::StageCostFunction cost = [&](int64_t s, int64_t b, int64_t e) -> double {
    switch (by) {
      case BalanceBy::Parameters: return static_cast<double>(sums.parameters(b, e));
      case BalanceBy::Time: return sums.time(b, e);
      case BalanceBy::Memory: return static_cast<double>(memory_of(sums, b, e, s, memory));
    }
    return kInfinity;
  };
  return make_partition(layers, min_max_split(n, stages, cost), memory);
}

PipelinePartition partition_rank_balanced(const std::vector<LayerProfile>& layers, int stages,
                                          int ranks, BalanceBy by, const MemoryModel& memory) {
  const int64_t n = check_request(layers, stages, memory);
  STRATA_CHECK(ranks >= 1 && stages % ranks == 0, "rank-balanced partition: ", stages,
               " stages on ", ranks, " ranks, expected a whole number of stages per rank");
  STRATA_CHECK(by != BalanceBy::Memory,
               "rank-balanced partition: by parameters or time, not memory");
  const PipelinePartition by_stage = partition_balanced(layers, stages, by, memory);
  if (ranks == stages) return by_stage;
  // C(n-1, stages-1) splits: search them all when that is affordable, else keep the
  // stage-balanced split.
  double splits = 1;
  for (int64_t i = 1; i < stages; ++i) splits = splits * static_cast<double>(n - i) / i;
  if (splits > kMaxRankBalancedSplits) return by_stage;

  const LayerSums sums(layers);
  const auto cost = [&](int64_t b, int64_t e) {
    return by == BalanceBy::Time ? sums.time(b, e) : static_cast<double>(sums.parameters(b, e));
  };
  // (busiest rank, largest stage) of a split: the first bounds the step, the second
  // breaks ties toward even stages.
  const auto score = [&](const std::vector<int64_t>& begins) {
    std::vector<double> per_rank(ranks, 0);
    double largest = 0;
    for (int64_t s = 0; s < stages; ++s) {
      const double c = cost(begins[s], s + 1 < stages ? begins[s + 1] : n);
      per_rank[s % ranks] += c;
      largest = std::max(largest, c);
    }
    return std::make_pair(*std::max_element(per_rank.begin(), per_rank.end()), largest);
  };
  std::vector<int64_t> best;
  for (const StagePlan& stage : by_stage.stages) best.push_back(stage.begin);
  auto best_score = score(best);
  std::vector<int64_t> begins(stages, 0);
  // Every increasing choice of begins[1..stages-1] in [1, n-1].
  std::function<void(int64_t)> search = [&](int64_t s) {
    if (s == stages) {
      const auto candidate = score(begins);
      if (candidate < best_score) {
        best_score = candidate;
        best = begins;
      }
      return;
    }
    for (int64_t b = begins[s - 1] + 1; b <= n - (stages - s); ++b) {
      begins[s] = b;
      search(s + 1);
    }
  };
  search(1);
  return make_partition(layers, best, memory);
}

PipelinePartition partition_joint(const std::vector<LayerProfile>& layers, int stages,
                                  int64_t limit_bytes, const MemoryModel& memory) {
  const int64_t n = check_request(layers, stages, memory);
  STRATA_CHECK(limit_bytes > 0, "per-stage memory limit: got ", limit_bytes,
               " bytes, expected more than 0");
  const LayerSums sums(layers);
  const core::StageCostFunction cost = [&](int64_t s, int64_t b, int64_t e) -> double {
    return memory_of(sums, b, e, s, memory) <= limit_bytes ? sums.time(b, e) : kInfinity;
  };
  const std::vector<int64_t> begins = min_max_split(n, stages, cost);
  if (begins.empty()) {
    // The smallest limit that fits is the largest stage of the memory-balanced split.
    int64_t needed = 0;
    for (const StagePlan& s : partition_balanced(layers, stages, BalanceBy::Memory, memory).stages)
      needed = std::max(needed, s.memory_bytes);
    STRATA_FAIL("no split of ", n, " layers into ", stages, " stages fits ",
                format_megabytes(limit_bytes), " (", limit_bytes,
                " bytes) per stage; the best split needs ", format_megabytes(needed), " (", needed,
                " bytes)");
  }
  PipelinePartition partition = make_partition(layers, begins, memory);
  partition.memory_limit_bytes = limit_bytes;
  return partition;
}

std::vector<torch::nn::Sequential> split_sequential(const torch::nn::Sequential& model,
                                                    const PipelinePartition& partition) {
  const int64_t n = static_cast<int64_t>(model->size());
  int64_t covered = 0;
  for (const StagePlan& s : partition.stages) {
    STRATA_CHECK(s.begin == covered && s.end > s.begin, "partition stage layers: got [", s.begin,
                 ", ", s.end, "), expected a non-empty range starting at ", covered);
    covered = s.end;
  }
  STRATA_CHECK(covered == n, "partition layers: got ", covered, ", expected ", n,
               " (the model's layers)");
  // named_children() and the AnyModule iterators list the children in the same order.
  const auto children = model->named_children();
  const auto modules = model->begin();
  std::vector<torch::nn::Sequential> parts;
  for (const StagePlan& s : partition.stages) {
    torch::nn::Sequential part;
    for (int64_t i = s.begin; i < s.end; ++i) part->push_back(children[i].key(), modules[i]);
    parts.push_back(part);
  }
  return parts;
}

}  // namespace strata::parallel
