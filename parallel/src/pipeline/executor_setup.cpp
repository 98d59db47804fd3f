// PipelineExecutor's construction: the checks, and the collective exchange from which
// every rank derives the same skip routes and tied-weight groups; also the tied weights'
// gradient sum and the option names.
#include <torch/utils.h>

#include <cstring>
#include <set>
#include <sstream>

#include "executor_internal.h"
#include "strata/core/error.h"
#include "strata/parallel/comm/allgather_strings.h"
#include "strata/parallel/pipeline/skip.h"

namespace strata::parallel {

using pipeline_detail::distinct_trainable;
using pipeline_detail::kMaxTag;

namespace {

// One line of a rank's stage contents: "<kind> <number> <name>" (the name may have spaces).
struct ContentLine {
  std::string kind;
  int number = 0;
  std::string name;
};
std::vector<ContentLine> parse_contents(const std::string& text) {
  std::vector<ContentLine> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(' '), b = line.find(' ', a + 1);
    lines.push_back(
        {line.substr(0, a), std::stoi(line.substr(a + 1, b - a - 1)), line.substr(b + 1)});
  }
  return lines;
}

}  // namespace

std::string to_string(Recompute recompute) {
  switch (recompute) {
    case Recompute::Never: return "never";
    case Recompute::Always: return "always";
    case Recompute::ExceptLast: return "except_last";
  }
  return "?";
}

Recompute parse_recompute(const std::string& text) {
  for (Recompute r : {Recompute::Never, Recompute::Always, Recompute::ExceptLast})
    if (text == to_string(r)) return r;
  STRATA_FAIL("recompute: got '", text, "', expected one of never, always, except_last");
}

std::vector<std::vector<std::string>> find_tied_parameters(const torch::nn::Module& model) {
  std::vector<std::vector<std::string>> groups;
  std::map<const c10::TensorImpl*, size_t> group_of;
  for (const auto& p : model.named_parameters()) {
    auto [it, added] = group_of.emplace(p.value().unsafeGetTensorImpl(), groups.size());
    if (added) groups.emplace_back();
    groups[it->second].push_back(p.key());
  }
  groups.erase(
      std::remove_if(groups.begin(), groups.end(), [](const auto& g) { return g.size() < 2; }),
      groups.end());
  return groups;
}

PipelineExecutor::PipelineExecutor(std::map<int, torch::nn::Sequential> stages,
                                   CommunicatorPtr comm, PipelineSchedule schedule,
                                   PipelineLoss loss, PipelineExecutorOptions options)
    : stages_(std::move(stages)),
      comm_(std::move(comm)),
      schedule_(std::move(schedule)),
      loss_(std::move(loss)),
      options_(std::move(options)) {
  STRATA_CHECK(comm_ != nullptr, "pipeline executor: communicator is null");
  STRATA_CHECK(static_cast<bool>(loss_), "pipeline executor: loss function is empty");
  verify_schedule(schedule_);
  STRATA_CHECK_EQ(comm_->size(), schedule_.num_ranks,
                  "pipeline executor: communicator size (the schedule's ranks)");
  const int64_t tags = int64_t{schedule_.num_stages} * schedule_.num_micro_batches * 2;
  STRATA_CHECK(tags - 1 <= kMaxTag, "pipeline executor: stages * micro-batches * 2 = ", tags,
               " message tags, expected at most ", kMaxTag + 1,
               " (the MPI tag limit): use fewer micro-batches or stages");
  for (const auto& in : schedule_.ranks[comm_->rank()])
    if (in.op == PipelineOp::BackwardInput) split_backward_ = true;
  exchange_stage_contents();
  // W's per-layer gradient from a layer's output to its parameters would also follow the
  // path through an earlier layer that uses the same tensor (a tied weight within one
  // stage), counting that use twice: such stages take W from the whole stage instead.
  for (const auto& [s, module] : stages_) {
    std::set<const c10::TensorImpl*> seen;
    for (const auto& layer : *module)
      for (const auto& p : distinct_trainable(layer.ptr()->parameters()))
        if (!seen.insert(p.unsafeGetTensorImpl()).second) shared_weight_stages_.insert(s);
  }
}

PipelineExecutor::~PipelineExecutor() = default;

void PipelineExecutor::check_placement() const {
  const c10::Device& device = options_.device();
  for (const auto& [s, module] : stages_) {
    for (const auto& p : module->named_parameters())
      STRATA_CHECK(p.value().device() == device, "pipeline executor: parameter '", p.key(),
                   "' of stage ", s, " is on ", p.value().device(), ", expected ", device,
                   " (the stage's device): move the stage there first");
    for (const auto& b : module->named_buffers())
      STRATA_CHECK(b.value().device() == device, "pipeline executor: buffer '", b.key(),
                   "' of stage ", s, " is on ", b.value().device(), ", expected ", device,
                   " (the stage's device): move the stage there first");
  }
}

// Every rank knows only its own stages, so the ranks exchange what their stages stash,
// pop and hold (one line each), and each rank derives the same routes and groups. A
// mistake in one rank's stages travels in the exchange too, so that every rank raises an
// error instead of the others waiting for it.
void PipelineExecutor::exchange_stage_contents() {
  const int rank = comm_->rank();
  std::string error;
  std::ostringstream mine;
  std::map<std::string, at::Tensor> my_parameters;
  try {
    check_placement();
    for (int s = 0; s < schedule_.num_stages; ++s) {
      if (schedule_.rank_of_stage(s) != rank) continue;
      auto it = stages_.find(s);
      STRATA_CHECK(it != stages_.end() && !it->second.is_empty(), "pipeline executor: rank ", rank,
                   " runs stage ", s, " of schedule '", schedule_.name,
                   "' but no module was given for it");
    }
    for (const auto& [s, module] : stages_) {
      STRATA_CHECK(s >= 0 && s < schedule_.num_stages && schedule_.rank_of_stage(s) == rank,
                   "pipeline executor: stage ", s, " given to rank ", rank,
                   ", expected one of rank ", rank, "'s stages (s % ", schedule_.num_ranks,
                   " == ", rank, ", s < ", schedule_.num_stages, ")");
      for (const auto& child : module->modules(/*include_self=*/false)) {
        if (auto stash = std::dynamic_pointer_cast<SkipStashImpl>(child))
          mine << "stash " << s << ' ' << stash->name() << '\n';
        if (auto pop = std::dynamic_pointer_cast<SkipPopImpl>(child))
          mine << "pop " << s << ' ' << pop->name() << '\n';
      }
      for (const auto& p : module->named_parameters()) my_parameters[p.key()] = p.value();
    }
    const auto& groups = options_.tied_parameters();
    for (size_t g = 0; g < groups.size(); ++g)
      for (const auto& name : groups[g]) {
        STRATA_CHECK(!name.empty() && name.find('\n') == std::string::npos,
                     "pipeline executor: tied parameter name '", name,
                     "' must be non-empty and on one line");
        if (my_parameters.count(name)) mine << "param " << g << ' ' << name << '\n';
      }
  } catch (const strata::Error& e) {
    error = e.what();
  }
  const std::vector<std::string> all =
      allgather_strings(*comm_, error.empty() ? "ok\n" + mine.str() : "error " + error);
  if (!error.empty()) throw strata::Error(error);
  for (int r = 0; r < comm_->size(); ++r)
    STRATA_CHECK(all[r].rfind("error ", 0) != 0, "pipeline executor: rank ", r,
                 " could not construct its executor: ", all[r].substr(6));

  // Skips: where each name is stashed and popped, over all ranks.
  std::map<std::string, std::vector<int>> stashes, pops;
  std::map<std::string, std::set<int>> holders;  // tied parameter name -> ranks
  for (int r = 0; r < comm_->size(); ++r)
    for (const ContentLine& line : parse_contents(all[r].substr(3))) {
      if (line.kind == "stash") stashes[line.name].push_back(line.number);
      if (line.kind == "pop") pops[line.name].push_back(line.number);
      if (line.kind == "param") holders[line.name].insert(r);
    }
  for (const auto& [name, stages] : pops)
    STRATA_CHECK(stashes.count(name), "pipeline executor: SkipPop('", name, "') in stage ",
                 stages[0], " has no SkipStash('", name, "') in any stage");
  for (const auto& [name, from] : stashes) {
    STRATA_CHECK(from.size() == 1, "pipeline executor: SkipStash('", name, "') appears ",
                 from.size(), " times in the stages, expected once");
    auto it = pops.find(name);
    STRATA_CHECK(it != pops.end(), "pipeline executor: SkipStash('", name, "') in stage ", from[0],
                 " has no SkipPop('", name, "') in any stage");
    STRATA_CHECK(it->second.size() == 1, "pipeline executor: SkipPop('", name, "') appears ",
                 it->second.size(), " times in the stages, expected once");
    const int to = it->second[0];
    STRATA_CHECK(to >= from[0], "pipeline executor: SkipPop('", name, "') in stage ", to,
                 " comes before its SkipStash('", name, "') in stage ", from[0]);
    // Within one stage the tray carries it; the executor does nothing.
    if (to != from[0]) skip_routes_.push_back({name, from[0], to});
  }
  const int64_t tags = int64_t{schedule_.num_stages + static_cast<int>(skip_routes_.size())} *
                       schedule_.num_micro_batches * 2;
  STRATA_CHECK(tags - 1 <= kMaxTag, "pipeline executor: (stages + skip routes) * micro-batches",
               " * 2 = ", tags, " message tags, expected at most ", kMaxTag + 1,
               " (the MPI tag limit): use fewer micro-batches, stages or cross-stage skips");

  // Tied weights: one sub-communicator per group, of the ranks holding a member.
  const auto& groups = options_.tied_parameters();
  for (size_t g = 0; g < groups.size(); ++g) {
    std::set<int> ranks;
    for (const auto& name : groups[g]) {
      auto it = holders.find(name);
      STRATA_CHECK(it != holders.end(), "pipeline executor: tied parameter '", name, "' (group ", g,
                   ") is in no rank's stages");
      ranks.insert(it->second.begin(), it->second.end());
    }
    const bool holds = ranks.count(rank) > 0;
    CommunicatorPtr group_comm = comm_->split(holds ? 0 : -1, rank);
    if (!holds) continue;
    TiedGroup group{group_comm, {}};
    for (const auto& name : groups[g]) {
      auto it = my_parameters.find(name);
      if (it == my_parameters.end()) continue;
      const bool seen = std::any_of(group.copies.begin(), group.copies.end(), [&](const auto& t) {
        return t.unsafeGetTensorImpl() == it->second.unsafeGetTensorImpl();
      });
      if (!seen) group.copies.push_back(it->second);
    }
    // Every copy starts from the lowest holding rank's value.
    torch::NoGradGuard no_grad;
    at::Tensor value = group.copies[0].detach().clone();
    broadcast_anywhere(*group.comm, value, 0)->wait();
    for (auto& copy : group.copies) copy.copy_(value);
    tied_groups_.push_back(std::move(group));
  }
}

bool PipelineExecutor::recomputes(int stage) const {
  switch (options_.recompute()) {
    case Recompute::Never: return false;
    case Recompute::Always: return true;
    case Recompute::ExceptLast: return stage != schedule_.num_stages - 1;
  }
  return false;
}

void PipelineExecutor::sync_tied_gradients() {
  for (auto& group : tied_groups_) {
    // The sum over this rank's copies (several names here may be several tensors), then
    // over the ranks: every use's gradient.
    at::Tensor sum = at::zeros_like(group.copies[0]);
    for (const auto& copy : group.copies)
      if (copy.grad().defined()) sum.add_(copy.grad());
    allreduce_anywhere(*group.comm, sum, ReduceOp::Sum)->wait();
    for (auto& copy : group.copies) {
      if (copy.grad().defined())
        copy.mutable_grad().copy_(sum);
      else
        copy.mutable_grad() = sum.clone();
    }
  }
}

}  // namespace strata::parallel
