// PipelineParallel: partition, stages, executor, data-parallel gradient sync and
// topology-free checkpoints for one rank of a pipeline x data-parallel grid.
#include "strata/parallel/pipeline/pipeline_parallel.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "executor_internal.h"
#include "strata/core/checkpoint.h"
#include "strata/core/checkpoint_restore.h"
#include "strata/core/error.h"
#include "strata/core/layer_partition.h"
#include "strata/core/module_copy.h"
#include "strata/core/parameters.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/comm/tensor_message.h"
#include "strata/parallel/data/expert_checkpoint.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/parallel/pipeline/trace.h"
#include "worker_generator.h"

namespace strata::parallel {

namespace pipeline_detail {

// One thread per in-process pipeline rank, kept for the pipeline's life (so that each
// rank's thread-local state, its intra-op threads among them, is set up once). run() runs
// task(r) on thread r for every r and returns when all are done, rethrowing the first
// error; a rank that fails aborts the group first, so that the others stop waiting for it.
class DeviceWorkers {
 public:
  using Abort = std::function<void(int rank, const std::string& reason)>;
  DeviceWorkers(int ranks, Abort abort) : abort_(std::move(abort)), errors_(ranks) {
    for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~DeviceWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
  }
  DeviceWorkers(const DeviceWorkers&) = delete;
  DeviceWorkers& operator=(const DeviceWorkers&) = delete;

  void run(const std::function<void(int rank)>& task) {
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = &task;
    running_ = static_cast<int>(threads_.size());
    ++generation_;
    for (auto& error : errors_) error = nullptr;
    wake_.notify_all();
    done_.wait(lock, [&] { return running_ == 0; });
    task_ = nullptr;
    for (auto& error : errors_)
      if (error) std::rethrow_exception(error);
  }

 private:
  void loop(int rank) {
    at::init_num_threads();  // the process's intra-op thread count, on this thread too
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        task = task_;
      }
      std::exception_ptr error;
      try {
        (*task)(rank);
      } catch (const std::exception& e) {
        error = std::current_exception();
        abort_(rank, e.what());
      } catch (...) {
        error = std::current_exception();
        abort_(rank, "unknown error");
      }
      std::lock_guard<std::mutex> lock(mutex_);
      errors_[rank] = error;
      if (--running_ == 0) done_.notify_all();
    }
  }

  Abort abort_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;  // last: started once the members they use exist
};

}  // namespace pipeline_detail

namespace {

// One device per pipeline rank, from none (the CPU), one for all, or one each.
std::vector<c10::Device> devices_per_rank(const std::vector<c10::Device>& devices, int ranks) {
  if (devices.empty()) return std::vector<c10::Device>(ranks, c10::kCPU);
  if (devices.size() == 1) return std::vector<c10::Device>(ranks, devices[0]);
  STRATA_CHECK(static_cast<int>(devices.size()) == ranks, "pipeline: ", devices.size(),
               " devices for ", ranks, " pipeline ranks, expected one or one per rank");
  return devices;
}

// Weights tied across this process's pipeline ranks: one tensor cannot live on two
// devices, nor take two threads' gradients. Every rank but the lowest holding a group gets
// its own copy of each layer that holds it (core::copy_layer), so that each rank's stages
// own their tensors as under mpirun; the executors then start the copies equal and sum
// their gradients at all-reduce-grads (PipelineExecutorOptions::tied_parameters).
void untie_across_ranks(std::vector<torch::nn::Sequential>& parts,
                        const std::vector<std::vector<std::string>>& tied,
                        const PipelineSchedule& schedule) {
  for (const auto& group : tied) {
    const std::set<std::string> names(group.begin(), group.end());
    // Which layers (by stage and name) hold a member, and the lowest rank holding one.
    std::map<int, std::set<std::string>> holders;
    int lowest = schedule.num_ranks;
    for (int s = 0; s < static_cast<int>(parts.size()); ++s)
      for (const auto& p : parts[s]->named_parameters()) {
        if (!names.count(p.key())) continue;
        holders[s].insert(p.key().substr(0, p.key().find('.')));
        lowest = std::min(lowest, schedule.rank_of_stage(s));
      }
    for (const auto& [s, layers] : holders) {
      if (schedule.rank_of_stage(s) == lowest) continue;
      torch::nn::Sequential copy;
      const auto children = parts[s]->named_children();
      auto child = children.begin();
      for (const auto& layer : *parts[s]) {
        const std::string& name = (child++)->key();
        copy->push_back(name, layers.count(name) ? core::copy_layer(layer, name) : layer);
      }
      parts[s] = copy;
    }
  }
}

// Whether a forward of `model` draws random numbers (dropout, also the functional one):
// one forward of `sample` under no_grad, the default generator's state put back after.
bool draws_random_numbers(torch::nn::Sequential& model, const at::Tensor& sample) {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  const auto state = [&] {
    std::lock_guard<std::mutex> lock(generator.mutex());
    return generator.get_state();
  };
  const at::Tensor before = state();
  {
    torch::NoGradGuard no_grad;
    model->forward(sample);
  }
  const bool drew = !at::equal(before, state());
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(before);
  return drew;
}

std::vector<int64_t> parse_balance_list(const std::string& text) {
  std::vector<int64_t> balance;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int64_t value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    STRATA_CHECK(used == item.size() && !item.empty() && value > 0, "balance '", text,
                 "': expected params, time, memory, auto or positive layer counts such as 3,5");
    balance.push_back(value);
  }
  return balance;
}

// What each stage holds comes from the schedule itself (simulated), so a schedule added to
// the registry gets its own memory model rather than another schedule's.
MemoryModel memory_model(const std::string& schedule, int stages, int ranks, int micro_batches,
                         double optimizer_state_factor) {
  STRATA_CHECK(ranks >= 1 && stages % ranks == 0, "pipeline: ", stages,
               " stages do not split evenly over ", ranks, " ranks");
  return MemoryModel()
      .in_flight(schedule_in_flight(schedule, ranks, micro_batches, stages / ranks))
      .optimizer_state_factor(optimizer_state_factor);
}

// Tags of the checkpoint gather, apart from the executor's (which restart every step and
// are all done by then anyway).
constexpr int kCheckpointTag = 32000;
// Tag of the layers a repartition moves (kCheckpointTag + 1 is evaluate's).
constexpr int kRebalanceTag = kCheckpointTag + 2;

// "3,5": layers per stage, as --balance takes them.
std::string join_counts(const std::vector<int64_t>& counts) {
  std::string text;
  for (size_t i = 0; i < counts.size(); ++i) text += (i ? "," : "") + std::to_string(counts[i]);
  return text;
}

}  // namespace

PipelinePartition choose_partition(const std::vector<LayerProfile>& layers,
                                   const std::string& balance, int stages,
                                   const std::string& schedule, int micro_batches,
                                   double optimizer_state_factor, int ranks) {
  STRATA_CHECK(stages <= static_cast<int>(layers.size()), "pipeline: ", stages,
               " stages but the model has only ", layers.size(), " layers");
  // With several stages per rank (interleaved), balance what each rank runs.
  if (ranks <= 0) ranks = stages;
  const MemoryModel memory =
      memory_model(schedule, stages, ranks, micro_batches, optimizer_state_factor);
  if (balance == "params")
    return partition_rank_balanced(layers, stages, ranks, BalanceBy::Parameters, memory);
  // "adaptive" starts from the measured-time split and moves from there (rebalance()).
  if (balance == "time" || balance == "adaptive")
    return partition_rank_balanced(layers, stages, ranks, BalanceBy::Time, memory);
  if (balance == "memory") return partition_balanced(layers, stages, BalanceBy::Memory, memory);
  if (balance == "auto") {
    // Speed first, but not at any memory cost: the fastest split whose largest stage needs
    // at most a quarter more than the most memory-balanced split's largest stage.
    const PipelinePartition lean = partition_balanced(layers, stages, BalanceBy::Memory, memory);
    int64_t largest = 0;
    for (const StagePlan& s : lean.stages) largest = std::max(largest, s.memory_bytes);
    return partition_joint(layers, stages, largest + largest / 4, memory);
  }
  const std::vector<int64_t> counts = parse_balance_list(balance);
  STRATA_CHECK(static_cast<int>(counts.size()) == stages, "balance '", balance, "' has ",
               counts.size(), " stages, expected ", stages);
  return partition_explicit(layers, counts, memory);
}

PipelineParallel::PipelineParallel(torch::nn::Sequential model, const ProcessGrid& grid,
                                   PipelineLoss loss, const at::Tensor& sample_batch,
                                   PipelineParallelOptions options)
    : grid_(grid), options_(std::move(options)) {
  // With a pipeline group of one rank, several devices make the ranks threads of this
  // process.
  const bool in_process = grid_.pipeline_size() == 1 && options_.devices().size() > 1;
  const int pipeline_ranks =
      in_process ? static_cast<int>(options_.devices().size()) : grid_.pipeline_size();
  devices_ = devices_per_rank(options_.devices(), pipeline_ranks);
  first_rank_ = in_process ? 0 : grid_.pipeline_rank();
  const int micro_batches = options_.micro_batches();
  STRATA_CHECK(micro_batches >= 1, "micro-batches: got ", micro_batches, ", expected at least 1");
  // fp16 needs loss scaling, which only HybridParallel's data-parallel path has yet.
  STRATA_CHECK(options_.precision() != core::Precision::Fp16,
               "pipeline precision fp16: no loss scaling in pipelines yet, expected bf16 or fp32");
  STRATA_CHECK(sample_batch.dim() >= 1 && sample_batch.size(0) >= micro_batches,
               "pipeline: the sample batch has ",
               sample_batch.dim() >= 1 ? sample_batch.size(0) : 0, " rows, expected at least the ",
               micro_batches, " micro-batches");
  PipelineSchedule schedule = make_pipeline_schedule(options_.schedule(), pipeline_ranks,
                                                     micro_batches, options_.virtual_stages());
  const int stages = schedule.num_stages;

  // Every rank profiles at once (so that no rank is timed while another spins in a
  // collective), the times are averaged, and every rank partitions the same profile: the
  // same split everywhere, or the same error everywhere when no split fits.
  const at::Tensor micro_batch = sample_batch.chunk(micro_batches, 0)[0];
  std::vector<LayerProfile> layers = profile_layers(model, micro_batch);
  at::Tensor times = at::empty({static_cast<int64_t>(layers.size())}, at::kDouble);
  for (size_t i = 0; i < layers.size(); ++i) times[i] = layers[i].time;
  grid_.world()->allreduce(times, ReduceOp::Avg)->wait();
  for (size_t i = 0; i < layers.size(); ++i) layers[i].time = times[i].item<double>();
  partition_ = choose_partition(layers, options_.balance(), stages, options_.schedule(),
                                micro_batches, options_.optimizer_state_factor(), pipeline_ranks);
  if (grid_.rank() == 0)
    spdlog::info("pipeline partition ({} stages, balance {}):\n{}", stages, options_.balance(),
                 partition_.describe());

  model_ = model;
  schedule_ = schedule;
  loss_ = std::move(loss);
  tied_ = find_tied_parameters(*model);
  profile_ = layers;
  memory_ = memory_model(options_.schedule(), stages, pipeline_ranks, micro_batches,
                         options_.optimizer_state_factor());
  // In one process: each worker draws from a generator of its own (worker_generator.h)
  // when the model draws at all (otherwise the workers' forwards need not take turns),
  // started from the default generator's state now, as every mpirun rank's is.
  if (in_process) {
    bool dropout = false;
    for (const auto& child : model->modules(/*include_self=*/false))
      dropout = dropout || child->name().find("Dropout") != std::string::npos;
    if (dropout || draws_random_numbers(model, micro_batch)) {
      at::Generator generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      worker_generator_state_ = generator.get_state();
    }
  }
  for (const std::string& name : options_.expert_parameters())
    STRATA_CHECK(model->named_parameters().find(name) != nullptr, "pipeline: expert parameter \"",
                 name, "\" is not a parameter of the model");
  if (options_.balance() == "adaptive") options_.adaptive(true);
  if (options_.adaptive()) {
    // Layers move between ranks by name, one stage per rank; an expert slice or a tied
    // copy would need its group rebuilt as well.
    STRATA_CHECK(stages == pipeline_ranks, "pipeline: balance adaptive with ",
                 options_.virtual_stages(),
                 " virtual stages per rank, expected 1 (one stage per rank)");
    STRATA_CHECK(options_.expert_parameters().empty(),
                 "pipeline: balance adaptive with expert parameters, expected a model without "
                 "experts (choose another --balance)");
    STRATA_CHECK(tied_.empty(), "pipeline: balance adaptive with tied parameters (",
                 tied_.front().front(), "), expected none (choose another --balance)");
    STRATA_CHECK(options_.adaptive_warmup_steps() >= 0 && options_.adaptive_window_steps() >= 1 &&
                     options_.adaptive_rounds() >= 1 && options_.adaptive_min_gain() >= 0,
                 "pipeline: adaptive warm-up ", options_.adaptive_warmup_steps(), ", window ",
                 options_.adaptive_window_steps(), ", rounds ", options_.adaptive_rounds(),
                 ", min gain ", options_.adaptive_min_gain(),
                 ": expected warm-up >= 0, window >= 1, rounds >= 1, min gain >= 0");
    done_adapting_ = false;
  }

  install_partition();

  // Replicas of a stage start equal: the first replica's values win; expert slices are
  // equal among the replicas holding the same experts.
  // (Detached: the copy may run on another thread, where no NoGradGuard holds.)
  auto broadcast_all = [](Communicator& group, const std::vector<at::Tensor>& tensors) {
    if (group.size() == 1) return;
    for (const auto& t : tensors) {
      at::Tensor data = t.detach();
      broadcast_anywhere(group, data, 0)->wait();
    }
  };
  broadcast_all(*grid_.data_parallel(), dense_parameters());
  broadcast_all(*grid_.data_parallel(), local_->buffers());
  broadcast_all(*grid_.expert_data_parallel(), expert_parameters());
}

void PipelineParallel::install_partition() {
  const int pipeline_ranks = schedule_.num_ranks;
  const bool in_process = grid_.pipeline_size() == 1 && pipeline_ranks > 1;
  const int last_rank = in_process ? pipeline_ranks - 1 : first_rank_;
  std::vector<torch::nn::Sequential> parts = split_sequential(model_, partition_);
  if (in_process) untie_across_ranks(parts, tied_, schedule_);
  stages_.clear();
  local_ = std::make_shared<torch::nn::Module>("PipelineStages");
  for (int s = 0; s < schedule_.num_stages; ++s) {
    const int rank = schedule_.rank_of_stage(s);
    if (rank < first_rank_ || rank > last_rank) continue;
    stages_[s] = parts[s];
    // The stage's parameters and buffers (and, made at the first step, its optimizer
    // state) live on its rank's device.
    torch::nn::Sequential& stage = stages_[s];
    if (options_.move_module())
      options_.move_module()(*stage, devices_[rank]);
    else
      stage->to(devices_[rank]);
    for (const auto& child : parts[s]->named_children())
      local_->register_module(child.key(), child.value());
  }

  const auto make_executor = [&](int rank, CommunicatorPtr comm) {
    std::map<int, torch::nn::Sequential> mine;
    for (const auto& [s, stage] : stages_)
      if (schedule_.rank_of_stage(s) == rank) mine[s] = stage;
    return std::make_unique<PipelineExecutor>(std::move(mine), std::move(comm), schedule_, loss_,
                                              PipelineExecutorOptions()
                                                  .recompute(options_.recompute())
                                                  .precision(options_.precision())
                                                  .tied_parameters(tied_)
                                                  .device(devices_[rank]));
  };
  if (!in_process) {
    executors_.clear();
    executors_.push_back(make_executor(first_rank_, grid_.pipeline()));
    if (grid_.data_parallel_size() > 1)
      executors_[0]->set_gradient_sync([this] { synchronize_gradients(); });
    return;
  }
  // The workers (and their generators) outlive a re-partition (--balance adaptive).
  const bool first_install = !workers_;
  if (first_install) {
    in_process_ = InProcessCommunicator::create(pipeline_ranks);
    executors_.resize(pipeline_ranks);
    workers_ = std::make_unique<pipeline_detail::DeviceWorkers>(
        pipeline_ranks, [this](int rank, const std::string& reason) {
          in_process_[rank]->abort("pipeline rank " + std::to_string(rank) + ": " + reason);
        });
  }
  // Construction is collective over the group: every rank on its own thread.
  workers_->run([&](int rank) {
    if (first_install && worker_generator_state_) {
      auto generator = at::make_generator<at::CPUGeneratorImpl>();
      generator.set_state(*worker_generator_state_);
      pipeline_detail::set_worker_generator(generator);
    }
    executors_[rank] = make_executor(rank, in_process_[rank]);
  });
}

PipelineParallel::~PipelineParallel() = default;

std::vector<const PipelineExecutor*> PipelineParallel::executors() const {
  std::vector<const PipelineExecutor*> result;
  for (const auto& executor : executors_) result.push_back(executor.get());
  return result;
}

void PipelineParallel::set_instruction_clock(const InstructionClockPtr& clock) {
  for (auto& executor : executors_) executor->set_instruction_clock(clock);
}

c10::optional<at::ScalarType> gradient_reduce_dtype(const PipelineParallelOptions& options) {
  if (options.grad_reduce_dtype()) return options.grad_reduce_dtype();
  if (options.precision() == core::Precision::Bf16) return at::kBFloat16;
  return c10::nullopt;
}

std::vector<at::Tensor> PipelineParallel::parameters() const {
  return core::unique_parameters(*local_);
}

std::vector<at::Tensor> PipelineParallel::expert_parameters() const {
  std::vector<at::Tensor> experts;
  const auto named = local_->named_parameters();
  for (const std::string& name : options_.expert_parameters())
    if (const at::Tensor* p = named.find(name)) experts.push_back(*p);
  return experts;
}

std::vector<at::Tensor> PipelineParallel::dense_parameters() const {
  const std::vector<at::Tensor> experts = expert_parameters();
  std::vector<at::Tensor> dense;
  for (const at::Tensor& p : parameters()) {
    const bool expert = std::any_of(experts.begin(), experts.end(), [&](const at::Tensor& e) {
      return e.unsafeGetTensorImpl() == p.unsafeGetTensorImpl();
    });
    if (!expert) dense.push_back(p);
  }
  return dense;
}

namespace {

// Sums the gradients of `parameters` over `group` and divides them by `divisor`: they are
// packed into buckets of bucket_cap_bytes, every bucket's all-reduce is started, then each
// is unpacked as it completes.
void reduce_gradients(std::vector<at::Tensor> parameters, Communicator& group, int divisor,
                      int64_t bucket_cap_bytes, c10::optional<at::ScalarType> reduce_dtype) {
  for (auto& p : parameters)
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);  // every rank sends alike

  struct Bucket {
    std::vector<at::Tensor> grads;
    at::Tensor flat;
    WorkPtr work;
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (auto& p : parameters) {
    if (buckets.empty() || bytes >= bucket_cap_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().grads.push_back(p.grad());
    bytes += p.grad().nbytes();
  }
  // Averaging over the whole group is one Avg all-reduce; otherwise sum, then divide.
  const bool average = divisor == group.size();
  for (Bucket& b : buckets) {
    std::vector<at::Tensor> flat;
    for (const auto& g : b.grads) flat.push_back(g.reshape({-1}));
    b.flat = at::cat(flat);
    const at::ScalarType dtype = b.flat.scalar_type();
    b.work =
        group.size() == 1
            ? std::make_shared<CompletedWork>()
            : allreduce_in_dtype(group, b.flat, average ? ReduceOp::Avg : ReduceOp::Sum,
                                 at::isFloatingType(dtype) ? reduce_dtype.value_or(dtype) : dtype);
  }
  for (Bucket& b : buckets) {
    b.work->wait();
    if (!average) b.flat.div_(divisor);
    int64_t offset = 0;
    for (auto& g : b.grads) {
      g.copy_(b.flat.slice(0, offset, offset + g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

}  // namespace

// Dense gradients are averaged over the data-parallel group. An expert's gradient comes
// from the tokens of every replica in its expert-parallel group (the all-to-all brought
// them), so summing over the replicas holding the same experts and dividing by the
// data-parallel size gives the same mean over all tokens.
void PipelineParallel::synchronize_gradients() {
  const int replicas = grid_.data_parallel_size();
  reduce_gradients(dense_parameters(), *grid_.data_parallel(), replicas,
                   options_.bucket_cap_bytes(), gradient_reduce_dtype(options_));
  const std::vector<at::Tensor> experts = expert_parameters();
  if (!experts.empty())
    reduce_gradients(experts, *grid_.expert_data_parallel(), replicas, options_.bucket_cap_bytes(),
                     gradient_reduce_dtype(options_));
}

double PipelineParallel::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                    torch::optim::Optimizer* optimizer, GradientSync sync) {
  double loss = 0;
  if (!workers_) {
    loss = executors_[0]->train_step(inputs, targets, optimizer, sync);
  } else {
    // Every rank returns the same loss. One optimizer holds every rank's parameters, so it
    // steps once, after all ranks' gradients are in (the schedules end with the step).
    std::vector<double> losses(executors_.size());
    workers_->run([&](int rank) {
      losses[rank] = executors_[rank]->train_step(inputs, targets, nullptr, sync);
    });
    if (optimizer != nullptr) optimizer->step();
    loss = losses[0];
  }
  if (sync == GradientSync::Synchronize) ++steps_;
  // A layer moves with its optimizer state, so only after a step that took one.
  if (!done_adapting_ && optimizer != nullptr && sync == GradientSync::Synchronize)
    adapt(optimizer);
  return loss;
}

std::vector<double> PipelineParallel::local_layer_times() const {
  std::vector<double> times(model_->size(), 0.0);
  std::map<int, double> stage_seconds;
  for (const auto& executor : executors_)
    for (const PipelineInstructionRecord& r : executor->records())
      if (is_compute(r.instruction.op)) stage_seconds[r.instruction.stage] += r.end - r.start;
  for (const auto& [s, seconds] : stage_seconds) {
    const StagePlan& plan = partition_.stages.at(s);
    double profiled = 0;
    for (int64_t l = plan.begin; l < plan.end; ++l) profiled += profile_[l].time;
    const double per_micro_batch = seconds / schedule_.num_micro_batches;
    const double layers = static_cast<double>(plan.end - plan.begin);
    for (int64_t l = plan.begin; l < plan.end; ++l)
      times[l] = per_micro_batch * (profiled > 0 ? profile_[l].time / profiled : 1 / layers);
  }
  return times;
}

std::vector<double> PipelineParallel::agree_on_layer_times(const std::vector<double>& mine) const {
  at::Tensor t = at::tensor(mine, at::kDouble);
  // Each layer is on one pipeline rank (zero elsewhere); replicas average; and every rank
  // takes world rank 0's table, so that rounding cannot make two ranks split differently.
  if (grid_.pipeline_size() > 1) grid_.pipeline()->allreduce(t, ReduceOp::Sum)->wait();
  if (grid_.data_parallel_size() > 1) grid_.data_parallel()->allreduce(t, ReduceOp::Avg)->wait();
  grid_.world()->broadcast(t, 0)->wait();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<double> PipelineParallel::measured_layer_times() const {
  return agree_on_layer_times(local_layer_times());
}

void PipelineParallel::adapt(torch::optim::Optimizer* optimizer) {
  if (++adaptive_steps_ <= options_.adaptive_warmup_steps()) return;
  window_times_.push_back(local_layer_times());
  if (static_cast<int>(window_times_.size()) < options_.adaptive_window_steps()) return;
  // The median step of each layer: one slow step (another process on the core) is ignored.
  std::vector<double> median(model_->size());
  for (size_t l = 0; l < median.size(); ++l) {
    std::vector<double> samples;
    for (const auto& step : window_times_) samples.push_back(step[l]);
    std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
    median[l] = samples[samples.size() / 2];
  }
  window_times_.clear();
  const int64_t step = steps_;
  std::vector<double> costs = agree_on_layer_times(median);
  if (options_.adaptive_costs()) costs = options_.adaptive_costs()(costs);
  const bool moved = rebalance(costs, optimizer, step, options_.adaptive_min_gain());
  // After a move the new stages warm up again before they are measured.
  adaptive_steps_ = 0;
  done_adapting_ = !moved || ++adaptive_round_ >= options_.adaptive_rounds();
}

bool PipelineParallel::rebalance(const std::vector<double>& layer_times,
                                 torch::optim::Optimizer* optimizer, int64_t step,
                                 double min_gain) {
  STRATA_CHECK(layer_times.size() == model_->size(), "rebalance: got times for ",
               layer_times.size(), " layers, expected ", model_->size(), " (the model's layers)");
  const core::LayerCostTable table =
      core::LayerCostTable::uniform(layer_times, schedule_.num_stages);
  const std::vector<int64_t> current = partition_.balance();
  const std::vector<int64_t> best = core::partition_layers(table);
  const auto slowest = [&](const std::vector<int64_t>& balance) {
    const std::vector<double> costs = core::stage_costs(table, balance);
    return *std::max_element(costs.begin(), costs.end());
  };
  const double now = slowest(current), then = slowest(best);
  if (grid_.rank() == 0) {
    std::string ms;
    for (double t : layer_times) ms += fmt::format("{}{:.3f}", ms.empty() ? "" : " ", t * 1e3);
    spdlog::info("adaptive balance at step {}: layer times (ms per micro-batch) {}", step, ms);
  }
  if (best == current || now - then < min_gain * now) {
    if (grid_.rank() == 0 && best == current)
      spdlog::info(
          "adaptive balance at step {}: split {} kept, the best (slowest stage {:.3f} ms "
          "per micro-batch)",
          step, join_counts(current), now * 1e3);
    else if (grid_.rank() == 0)
      spdlog::info(
          "adaptive balance at step {}: split {} kept (best {}: slowest stage {:.3f} -> {:.3f} ms "
          "per micro-batch, under the {:.0f}% that moves)",
          step, join_counts(current), join_counts(best), now * 1e3, then * 1e3, min_gain * 100);
    return false;
  }
  repartition(best, optimizer);
  if (grid_.rank() == 0)
    spdlog::info(
        "adaptive balance at step {}: split {} -> {}, slowest stage {:.3f} -> {:.3f} ms per "
        "micro-batch (predicted)",
        step, join_counts(current), join_counts(best), now * 1e3, then * 1e3);
  return true;
}

void PipelineParallel::repartition(const std::vector<int64_t>& balance,
                                   torch::optim::Optimizer* optimizer) {
  STRATA_CHECK(schedule_.num_stages == schedule_.num_ranks, "repartition: the pipeline has ",
               schedule_.num_stages / schedule_.num_ranks, " stages per rank, expected 1");
  STRATA_CHECK(options_.expert_parameters().empty() && tied_.empty(),
               "repartition: the model has expert or tied parameters, expected neither");
  STRATA_CHECK(optimizer == nullptr || optimizer->param_groups().size() == 1,
               "repartition: the optimizer has ", optimizer->param_groups().size(),
               " param groups, expected 1 (holding parameters())");
  PipelinePartition next = partition_explicit(profile_, balance, memory_);
  // Every tensor of this rank's layers by its name in the whole model: "3.weight", or
  // "optimizer/3.weight/momentum_buffer" for its state.
  core::CheckpointContents contents = core::checkpoint_contents(*local_, optimizer);
  std::map<std::string, int64_t> layer_index;
  for (const auto& child : model_->named_children())
    layer_index.emplace(child.key(), static_cast<int64_t>(layer_index.size()));
  const auto new_rank = [&](const std::string& tensor_name) {
    const std::string prefix = "optimizer/";
    std::string name = tensor_name;
    if (name.compare(0, prefix.size(), prefix) == 0) name = name.substr(prefix.size());
    const int64_t l = layer_index.at(name.substr(0, name.find('.')));
    for (size_t s = 0; s < next.stages.size(); ++s)
      if (next.stages[s].begin <= l && l < next.stages[s].end)
        return schedule_.rank_of_stage(static_cast<int>(s));
    STRATA_FAIL("repartition: layer ", l, " is in no stage");
  };

  // Under mpirun, each replica's pipeline ranks swap the layers that change rank; every
  // pair exchanges a list of names (perhaps empty), then the tensors. An in-process
  // pipeline holds every layer already.
  std::vector<core::CheckpointTensor> arrived;
  Communicator& pipe = *grid_.pipeline();
  if (pipe.size() > 1) {
    const int me = pipe.rank();
    std::vector<nlohmann::json> names(pipe.size(), nlohmann::json::array());
    std::vector<std::vector<at::Tensor>> tensors(pipe.size());
    for (const core::CheckpointTensor& t : contents.tensors) {
      const int to = new_rank(t.name);
      if (to == me) continue;
      names[to].push_back({t.name, t.kind});
      tensors[to].push_back(t.tensor.detach());
    }
    std::vector<WorkPtr> works;
    const auto send = [&](const at::Tensor& t, int to) {
      auto more = isend_tensor(pipe, t, to, kRebalanceTag);
      works.insert(works.end(), more.begin(), more.end());
    };
    for (int r = 0; r < pipe.size(); ++r) {
      if (r == me) continue;
      send(string_to_tensor(names[r].dump()), r);
      for (const at::Tensor& t : tensors[r]) send(t, r);
    }
    for (int r = 0; r < pipe.size(); ++r) {
      if (r == me) continue;
      const auto list =
          nlohmann::json::parse(tensor_to_string(recv_tensor(pipe, r, kRebalanceTag)));
      for (const auto& entry : list)
        arrived.push_back({entry.at(0).get<std::string>(), entry.at(1).get<std::string>(),
                           recv_tensor(pipe, r, kRebalanceTag)});
    }
    for (auto& work : works) work->wait();
  }
  contents.tensors.insert(contents.tensors.end(), arrived.begin(), arrived.end());

  partition_ = std::move(next);
  install_partition();
  if (optimizer != nullptr) optimizer->param_groups()[0].params() = parameters();
  core::restore_checkpoint_contents(contents, *local_, optimizer);
}

at::Tensor PipelineParallel::evaluate(const at::Tensor& inputs) {
  torch::NoGradGuard no_grad;
  Communicator& pipe = *grid_.pipeline();
  const PipelineSchedule& schedule = executors_[0]->schedule();
  const int stages = schedule.num_stages;
  // An in-process pipeline holds every stage: its ranks are all "here".
  const auto here = [&](int s) { return workers_ || schedule.rank_of_stage(s) == pipe.rank(); };
  // One tensor, or the several that layers pass on (stage_io.h), layer by layer.
  pipeline_detail::StageValue x;
  for (auto& [s, stage] : stages_) {
    if (s == 0) {
      x = {{inputs}, false};
    } else if (!here(s - 1)) {
      TensorWorkPtr work = pipe.irecv_tensor(schedule.rank_of_stage(s - 1), kCheckpointTag + 1);
      work->wait();
      x = {received_tensors(*work), received_list(*work)};
    }
    for (at::Tensor& t : x.tensors) t = t.to(devices_[schedule.rank_of_stage(s)]);
    const bool training = stage->is_training();
    stage->eval();
    {
      core::AutocastScope autocast(options_.precision());
      for (auto& layer : *stage) x = pipeline_detail::forward_layer(layer, x, s);
      if (options_.precision() != core::Precision::Fp32)
        for (at::Tensor& t : x.tensors) t = core::to_full_precision(t);
    }
    stage->train(training);
    if (s + 1 < stages && !here(s + 1)) {
      const int next = schedule.rank_of_stage(s + 1);
      for (auto& work : x.list ? isend_tensors(pipe, x.tensors, next, kCheckpointTag + 1)
                               : isend_tensor(pipe, x.tensors[0], next, kCheckpointTag + 1))
        work->wait();
    }
  }
  at::Tensor output;
  if (here(stages - 1)) {
    STRATA_CHECK(!x.list && x.tensors.size() == 1, "pipeline evaluate: the last stage (",
                 stages - 1, ") returned a StageIO of ", x.tensors.size(),
                 " tensors, expected one tensor");
    output = x.tensors[0].cpu();
  }
  return workers_ ? output : broadcast_tensor(pipe, output, schedule.rank_of_stage(stages - 1));
}

void PipelineParallel::save_checkpoint(const std::string& path, torch::optim::Optimizer* optimizer,
                                       int64_t step, const nlohmann::json& extra) {
  // Every replica gathers its stages' whole expert stacks (the expert groups line up
  // only when all take part); then replicas hold equal stages: the first one's suffice.
  core::CheckpointContents contents = core::checkpoint_contents(*local_, optimizer);
  gather_expert_tensors(contents, options_.expert_parameters(), *grid_.expert_parallel());
  if (grid_.data_parallel_rank() == 0) {
    Communicator& pipe = *grid_.pipeline();
    if (pipe.rank() != 0) {
      nlohmann::json names = nlohmann::json::array();
      for (const auto& t : contents.tensors) names.push_back({t.name, t.kind});
      std::vector<WorkPtr> works =
          isend_tensor(pipe, string_to_tensor(names.dump()), 0, kCheckpointTag);
      for (const auto& t : contents.tensors) {
        auto more = isend_tensor(pipe, t.tensor.detach(), 0, kCheckpointTag);
        works.insert(works.end(), more.begin(), more.end());
      }
      for (auto& work : works) work->wait();
    } else {
      std::set<std::string> have;
      for (const auto& t : contents.tensors) have.insert(t.name);
      for (int r = 1; r < pipe.size(); ++r) {
        const auto names =
            nlohmann::json::parse(tensor_to_string(recv_tensor(pipe, r, kCheckpointTag)));
        for (const auto& entry : names) {
          at::Tensor tensor = recv_tensor(pipe, r, kCheckpointTag);
          // A tied weight's copies are equal after every step; one of each name is enough.
          const std::string name = entry.at(0).get<std::string>();
          if (have.insert(name).second)
            contents.tensors.push_back({name, entry.at(1).get<std::string>(), tensor});
        }
      }
      core::write_checkpoint(path, contents, step, extra);
    }
  }
  // Nobody goes on (and perhaps reads the checkpoint) before it is complete.
  grid_.world()->barrier()->wait();
}

int64_t PipelineParallel::load_checkpoint(const std::string& path,
                                          torch::optim::Optimizer* optimizer,
                                          nlohmann::json* extra) {
  return load_checkpoint_with_expert_slices(
      path, *local_, optimizer, extra, core::CheckpointMatch::Subset, options_.expert_parameters(),
      grid_.expert_parallel_size(), grid_.expert_parallel_rank());
}

}  // namespace strata::parallel
