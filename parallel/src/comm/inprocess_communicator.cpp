#include "strata/parallel/comm/inprocess_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "communicator_checks.h"
#include "strata/core/error.h"
#include "strata/parallel/comm/tensor_message.h"

namespace strata::parallel {
namespace detail {

// What every group of one create() shares. One lock and one condition variable for all of
// them, so that abort() and a timeout wake every waiter, whichever group it waits in.
struct InProcessJob {
  explicit InProcessJob(std::chrono::milliseconds timeout) : timeout(timeout) {}
  std::mutex mutex;
  std::condition_variable changed;
  std::string abort_reason;  // set once: by abort() or by a timeout
  const std::chrono::milliseconds timeout;
};

// What one rank brings to a collective call, posted where the other ranks can read it.
struct InProcessSlot {
  std::string op;
  std::string signature;    // what every rank must pass alike: dtype, shape, op, root
  std::string start_error;  // the rank raised when it started the call
  std::string read_error;   // the rank failed while reading the other ranks' tensors
  at::Tensor input;         // read by the other ranks
  at::Tensor partial;       // this rank's share of an allreduce result
  AlltoallLayout layout;
  int color = -1;  // split
  int key = 0;
  std::shared_ptr<InProcessGroup> new_group;  // split: made by the new group's first rank
};
using Slots = std::vector<InProcessSlot>;

// A collective call on one rank: its slot and the steps it runs once all ranks posted.
struct InProcessCollective {
  InProcessSlot slot;
  // Cross-rank checks, with the lock held (every rank runs them on the same slots, so
  // every rank raises the same error).
  std::function<void(const Slots&)> agree;
  // Reads the other ranks' inputs; writes only this rank's outputs or its own slot.
  std::function<void(const Slots&, InProcessSlot&)> read;
  // After every rank has read: may overwrite this rank's inputs, reads only slots.
  std::function<void(const Slots&)> write;
};

// One collective call across the ranks of a group.
struct InProcessRendezvous {
  explicit InProcessRendezvous(int size) : slots(size), reached(size, -1) {}
  Slots slots;
  std::vector<int> reached;  // per rank, the last phase it reached
  int departed = 0;
};

// A tensor handed over by isend_tensor without a copy: the send completes once the
// receiver has made its own copy.
struct InProcessHandover {
  bool taken = false;
};

struct InProcessMessage {
  at::Tensor tensor;
  std::shared_ptr<InProcessHandover> handover;  // null for a buffered isend
  // isend_tensors' tensors, in place of `tensor`.
  std::vector<at::Tensor> list;
  bool is_list = false;
};

struct InProcessPendingRecv {
  InProcessMessage message;
  bool arrived = false;
};

struct InProcessMailbox {
  std::deque<InProcessMessage> messages;                        // sent, not yet received
  std::deque<std::shared_ptr<InProcessPendingRecv>> receivers;  // posted, not yet matched
};

struct InProcessGroup {
  InProcessGroup(std::shared_ptr<InProcessJob> job, int size)
      : job(std::move(job)), size(size), gone(size, false) {}
  const std::shared_ptr<InProcessJob> job;
  const int size;
  std::vector<bool> gone;  // ranks whose communicator was destroyed
  std::map<uint64_t, std::shared_ptr<InProcessRendezvous>> calls;   // by sequence number
  std::map<std::tuple<int, int, int>, InProcessMailbox> mailboxes;  // by (src, dst, tag)
};

class InProcessWorker {
 public:
  InProcessWorker() : thread_([this] { loop(); }) {}
  // Runs the tasks already posted, then stops.
  ~InProcessWorker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  InProcessWorker(const InProcessWorker&) = delete;
  InProcessWorker& operator=(const InProcessWorker&) = delete;

  // Numbers the task when it is queued, so that the numbers follow the order the tasks
  // run in even when several threads post: the ranks of a group meet by number.
  void post(std::function<void(uint64_t sequence)> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back([task = std::move(task), sequence = next_sequence_++] { task(sequence); });
    }
    wake_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the members it uses exist
};

}  // namespace detail

namespace {

using detail::InProcessGroup;
using detail::InProcessJob;
using detail::InProcessSlot;
using detail::Slots;

std::string describe(const at::Tensor& tensor) {
  return strata::detail::concat(c10::toString(tensor.scalar_type()), " ",
                                detail::shape_string(tensor.sizes()));
}

std::string list_ranks(const std::vector<int>& ranks) {
  std::vector<int64_t> wide(ranks.begin(), ranks.end());
  return detail::shape_string(wide);
}

// Lock held. The first reason wins; every waiter wakes up and raises.
void abort_job(InProcessJob& job, const std::string& reason) {
  if (job.abort_reason.empty()) job.abort_reason = reason;
  job.changed.notify_all();
}

void throw_if_aborted(const InProcessJob& job) {
  STRATA_CHECK(job.abort_reason.empty(), "inprocess communicator aborted: ", job.abort_reason);
}

// Waits, lock held, until ready() - or raises when the job aborts, when a rank in
// missing() has left, or after the job's timeout (which aborts the job: the ranks that
// were waited for would find the others gone).
template <typename Ready, typename Missing>
void wait_for_ranks(std::unique_lock<std::mutex>& lock, InProcessGroup& group, Ready ready,
                    Missing missing, const std::string& what) {
  InProcessJob& job = *group.job;
  const auto deadline = std::chrono::steady_clock::now() + job.timeout;
  for (;;) {
    throw_if_aborted(job);
    if (ready()) return;
    for (int rank : missing()) {
      STRATA_CHECK(!group.gone[rank], what, ": rank ", rank,
                   " left the group (its communicator was destroyed) before taking part");
    }
    if (job.changed.wait_until(lock, deadline) == std::cv_status::timeout && !ready()) {
      abort_job(job, strata::detail::concat(what, " timed out after ", job.timeout.count(),
                                            " ms waiting for ranks ", list_ranks(missing())));
      throw_if_aborted(job);
    }
  }
}

// acc = acc (op) x, elementwise. Bool: add is "or", maximum "or", minimum "and". The ranks'
// tensors may live on different devices (an in-process pipeline's): x is copied to acc's.
void reduce_into(at::Tensor& acc, const at::Tensor& other, ReduceOp op) {
  const at::Tensor x = other.device() == acc.device() ? other : other.to(acc.device());
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: acc.add_(x); break;
    case ReduceOp::Max: at::maximum_out(acc, acc, x); break;
    case ReduceOp::Min: at::minimum_out(acc, acc, x); break;
  }
}

// The reduction over ranks of parts[0..n), in rank order (so every rank gets the same bits).
template <typename Part>
at::Tensor reduce_parts(int size, ReduceOp op, Part part) {
  at::Tensor acc = part(0).clone();
  for (int q = 1; q < size; ++q) reduce_into(acc, part(q), op);
  if (op == ReduceOp::Avg) acc.div_(size);
  return acc;
}

// The ranks of `slots` whose color is `color`, ordered by (key, rank).
std::vector<int> split_members(const Slots& slots, int color) {
  std::vector<int> members;
  for (int q = 0; q < static_cast<int>(slots.size()); ++q) {
    if (slots[q].color == color) members.push_back(q);
  }
  std::stable_sort(members.begin(), members.end(),
                   [&](int a, int b) { return slots[a].key < slots[b].key; });
  return members;
}

// Done when the worker has run the call.
class InProcessWork final : public Work {
 public:
  void finish(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::move(error);
      done_ = true;
    }
    finished_.notify_all();
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable finished_;
  bool done_ = false;
  std::exception_ptr error_;
};

// Done when a message has arrived and been copied into the tensor.
// A receive: into a given tensor (irecv), or of a whole tensor onto a device
// (irecv_tensor, when `tensor` is undefined).
class InProcessRecvWork final : public TensorListWork {
 public:
  InProcessRecvWork(std::shared_ptr<InProcessGroup> group,
                    std::shared_ptr<detail::InProcessPendingRecv> pending, at::Tensor tensor,
                    int src, int tag, int rank, c10::Device device = c10::kCPU)
      : group_(std::move(group)),
        pending_(std::move(pending)),
        tensor_(std::move(tensor)),
        whole_(!tensor_.defined()),
        device_(device),
        src_(src),
        tag_(tag),
        rank_(rank) {}

  void wait() override {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!done_) {
      try {
        std::unique_lock<std::mutex> lock(group_->job->mutex);
        wait_for_ranks(
            lock, *group_, [&] { return pending_->arrived; },
            [&] { return std::vector<int>{src_}; },
            strata::detail::concat("recv on rank ", rank_, " from rank ", src_, " (tag ", tag_,
                                   ")"));
      } catch (...) {
        error_ = std::current_exception();
        done_ = true;
      }
      if (!done_) complete();
    }
    if (error_) std::rethrow_exception(error_);
  }

  bool is_completed() override {
    std::unique_lock<std::mutex> guard(mutex_, std::try_to_lock);
    if (!guard.owns_lock()) return false;  // another thread is in wait()
    if (done_) return true;
    bool arrived = false;
    {
      std::lock_guard<std::mutex> lock(group_->job->mutex);
      arrived = pending_->arrived;
    }
    if (arrived) complete();
    return done_;
  }

  at::Tensor tensor() override {
    STRATA_CHECK(!list_ || results_.size() == 1, "recv from rank ", src_, " (tag ", tag_,
                 "): a list of ", results_.size(), " tensors, expected one tensor");
    return results_.empty() ? at::Tensor() : results_[0];
  }
  std::vector<at::Tensor> tensors() override { return results_; }
  bool is_list() override { return list_; }

 private:
  // The message is ours alone once it has arrived: no lock needed to read it.
  void complete() {
    try {
      const detail::InProcessMessage& message = pending_->message;
      STRATA_CHECK(whole_ || !message.is_list, "recv from rank ", src_, " (tag ", tag_,
                   "): a list of tensors (isend_tensors), expected one tensor (irecv_tensor)");
      if (whole_) {
        // The one copy between the two ranks' devices.
        list_ = message.is_list;
        for (const auto& t :
             message.is_list ? message.list : std::vector<at::Tensor>{message.tensor})
          results_.push_back(
              t.to(t.options().device(device_), /*non_blocking=*/false, /*copy=*/true));
      } else {
        STRATA_CHECK(message.tensor.scalar_type() == tensor_.scalar_type(), "recv from rank ", src_,
                     " (tag ", tag_, ") dtype: got ", c10::toString(message.tensor.scalar_type()),
                     ", expected ", c10::toString(tensor_.scalar_type()),
                     " (the receiving tensor's)");
        detail::check_received_numel(message.tensor.numel(), tensor_.numel(), src_, tag_);
        tensor_.copy_(message.tensor.reshape(tensor_.sizes()));
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    if (const auto& handover = pending_->message.handover) {
      std::lock_guard<std::mutex> lock(group_->job->mutex);
      handover->taken = true;
      group_->job->changed.notify_all();
    }
    pending_.reset();
    tensor_ = at::Tensor();
    done_ = true;
  }

  std::shared_ptr<InProcessGroup> group_;
  std::shared_ptr<detail::InProcessPendingRecv> pending_;
  at::Tensor tensor_;
  std::vector<at::Tensor> results_;
  bool list_ = false;
  const bool whole_;
  const c10::Device device_;
  const int src_, tag_, rank_;
  std::mutex mutex_;
  bool done_ = false;
  std::exception_ptr error_;
};

// isend_tensor's Work: done when the receiver has copied the tensor.
class InProcessHandoverWork final : public Work {
 public:
  InProcessHandoverWork(std::shared_ptr<InProcessGroup> group,
                        std::shared_ptr<detail::InProcessHandover> handover, int dst, int tag,
                        int rank)
      : group_(std::move(group)),
        handover_(std::move(handover)),
        dst_(dst),
        tag_(tag),
        rank_(rank) {}

  void wait() override {
    std::unique_lock<std::mutex> lock(group_->job->mutex);
    wait_for_ranks(
        lock, *group_, [&] { return handover_->taken; }, [&] { return std::vector<int>{dst_}; },
        strata::detail::concat("send of a tensor on rank ", rank_, " to rank ", dst_, " (tag ",
                               tag_, ")"));
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> lock(group_->job->mutex);
    return handover_->taken;
  }

 private:
  std::shared_ptr<InProcessGroup> group_;
  std::shared_ptr<detail::InProcessHandover> handover_;
  const int dst_, tag_, rank_;
};

}  // namespace

// ---- InProcessCommunicator ------------------------------------------------------------

std::vector<std::shared_ptr<InProcessCommunicator>> InProcessCommunicator::create(
    int world_size, std::chrono::milliseconds timeout) {
  STRATA_CHECK(world_size >= 1, "inprocess world size: got ", world_size, ", expected >= 1");
  STRATA_CHECK(timeout.count() > 0, "inprocess timeout: got ", timeout.count(),
               " ms, expected > 0");
  auto group =
      std::make_shared<InProcessGroup>(std::make_shared<InProcessJob>(timeout), world_size);
  std::vector<std::shared_ptr<InProcessCommunicator>> ranks;
  for (int r = 0; r < world_size; ++r) {
    ranks.push_back(std::shared_ptr<InProcessCommunicator>(new InProcessCommunicator(group, r)));
  }
  return ranks;
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessGroup> group, int rank)
    : group_(std::move(group)), rank_(rank), worker_(std::make_unique<detail::InProcessWorker>()) {}

InProcessCommunicator::~InProcessCommunicator() {
  worker_.reset();
  std::lock_guard<std::mutex> lock(group_->job->mutex);
  group_->gone[rank_] = true;
  group_->job->changed.notify_all();
}

int InProcessCommunicator::size() const { return group_->size; }

void InProcessCommunicator::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(group_->job->mutex);
  abort_job(*group_->job, strata::detail::concat("rank ", rank_, ": ", reason));
}

WorkPtr InProcessCommunicator::submit(const char* op, const std::function<Collective()>& prepare) {
  {
    std::lock_guard<std::mutex> lock(group_->job->mutex);
    throw_if_aborted(*group_->job);
  }
  auto collective = std::make_shared<Collective>();
  try {
    *collective = prepare();
  } catch (const std::exception& error) {
    // Join the call anyway, so that the other ranks raise instead of waiting for this one.
    auto failed = std::make_shared<Collective>();
    failed->slot.start_error = error.what();
    failed->slot.op = op;
    worker_->post([this, failed](uint64_t sequence) {
      try {
        run(sequence, *failed);
      } catch (...) {  // raised to the caller already
      }
    });
    throw;
  }
  collective->slot.op = op;
  auto work = std::make_shared<InProcessWork>();
  worker_->post([this, collective, work](uint64_t sequence) {
    try {
      run(sequence, *collective);
      work->finish(nullptr);
    } catch (...) {
      work->finish(std::current_exception());
    }
  });
  return work;
}

void InProcessCommunicator::run(uint64_t sequence, Collective& collective) {
  InProcessGroup& group = *group_;
  const int size = group.size;
  const std::string op = collective.slot.op;
  const std::string what = strata::detail::concat(op, " (call #", sequence, " of rank ", rank_,
                                                  " in a group of ", size, ")");
  std::unique_lock<std::mutex> lock(group.job->mutex);
  auto& entry = group.calls[sequence];
  if (!entry) entry = std::make_shared<detail::InProcessRendezvous>(size);
  const std::shared_ptr<detail::InProcessRendezvous> call = entry;

  // However this ends, leave the call; the last rank out forgets it.
  struct Departure {
    std::unique_lock<std::mutex>& lock;
    InProcessGroup& group;
    detail::InProcessRendezvous& call;
    uint64_t sequence;
    ~Departure() {
      if (!lock.owns_lock()) lock.lock();
      if (++call.departed == group.size) group.calls.erase(sequence);
    }
  } departure{lock, group, *call, sequence};

  auto reach = [&](int phase) {
    call->reached[rank_] = phase;
    group.job->changed.notify_all();
    wait_for_ranks(
        lock, group,
        [&] {
          return std::all_of(call->reached.begin(), call->reached.end(),
                             [&](int p) { return p >= phase; });
        },
        [&] {
          std::vector<int> missing;
          for (int q = 0; q < size; ++q) {
            if (call->reached[q] < phase) missing.push_back(q);
          }
          return missing;
        },
        what);
  };
  auto raise_rank_error = [&](std::string InProcessSlot::*error) {
    for (int q = 0; q < size; ++q) {
      const std::string& message = call->slots[q].*error;
      if (!message.empty()) STRATA_FAIL(op, " failed on rank ", q, ": ", message);
    }
  };

  call->slots[rank_] = std::move(collective.slot);
  reach(0);
  const Slots& slots = call->slots;
  raise_rank_error(&InProcessSlot::start_error);
  for (int q = 0; q < size; ++q) {
    STRATA_CHECK(slots[q].op == op, "collective mismatch: call #", sequence, " is ", op,
                 " on rank ", rank_, " but ", slots[q].op, " on rank ", q);
    STRATA_CHECK(slots[q].signature == slots[0].signature, op,
                 " arguments differ between ranks: rank 0 passed ", slots[0].signature, ", rank ",
                 q, " passed ", slots[q].signature);
  }
  if (collective.agree) collective.agree(slots);

  lock.unlock();
  std::string read_error;
  try {
    if (collective.read) collective.read(slots, call->slots[rank_]);
  } catch (const std::exception& error) {
    read_error = error.what();
  }
  lock.lock();
  call->slots[rank_].read_error = read_error;
  reach(1);
  raise_rank_error(&InProcessSlot::read_error);

  lock.unlock();
  if (collective.write) collective.write(slots);
}

WorkPtr InProcessCommunicator::isend(const at::Tensor& tensor, int dst, int tag) {
  detail::check_defined(tensor, "isend tensor");
  detail::check_peer(dst, size(), "isend dst");
  detail::check_tag(tag, "isend");
  at::Tensor message = tensor.clone(at::MemoryFormat::Contiguous);
  std::lock_guard<std::mutex> lock(group_->job->mutex);
  throw_if_aborted(*group_->job);
  deliver({std::move(message), nullptr, {}, false}, dst, tag);
  return std::make_shared<CompletedWork>();
}

// Lock held: to the oldest receive posted for (this rank, dst, tag), or into the mailbox.
void InProcessCommunicator::deliver(detail::InProcessMessage message, int dst, int tag) {
  auto& mailbox = group_->mailboxes[{rank_, dst, tag}];
  if (mailbox.receivers.empty()) {
    mailbox.messages.push_back(std::move(message));
  } else {
    auto& receiver = *mailbox.receivers.front();
    receiver.message = std::move(message);
    receiver.arrived = true;
    mailbox.receivers.pop_front();
    group_->job->changed.notify_all();
  }
}

std::vector<WorkPtr> InProcessCommunicator::isend_tensor(const at::Tensor& tensor, int dst,
                                                         int tag) {
  detail::check_defined(tensor, "isend_tensor tensor");
  detail::check_peer(dst, size(), "isend_tensor dst");
  detail::check_tag(tag, "isend_tensor");
  auto handover = std::make_shared<detail::InProcessHandover>();
  std::lock_guard<std::mutex> lock(group_->job->mutex);
  throw_if_aborted(*group_->job);
  deliver({tensor, handover, {}, false}, dst, tag);
  return {std::make_shared<InProcessHandoverWork>(group_, handover, dst, tag, rank_)};
}

std::vector<WorkPtr> InProcessCommunicator::isend_tensors(const std::vector<at::Tensor>& tensors,
                                                          int dst, int tag) {
  STRATA_CHECK(static_cast<int64_t>(tensors.size()) <= kTensorListMaxTensors,
               "isend_tensors: a list of ", tensors.size(), " tensors, expected at most ",
               kTensorListMaxTensors);
  for (const auto& tensor : tensors) detail::check_defined(tensor, "isend_tensors tensor");
  detail::check_peer(dst, size(), "isend_tensors dst");
  detail::check_tag(tag, "isend_tensors");
  auto handover = std::make_shared<detail::InProcessHandover>();
  std::lock_guard<std::mutex> lock(group_->job->mutex);
  throw_if_aborted(*group_->job);
  deliver({at::Tensor(), handover, tensors, true}, dst, tag);
  return {std::make_shared<InProcessHandoverWork>(group_, handover, dst, tag, rank_)};
}

WorkPtr InProcessCommunicator::irecv(at::Tensor& tensor, int src, int tag) {
  detail::check_defined(tensor, "irecv tensor");
  return post_receive(tensor, src, tag, c10::kCPU, "irecv");
}

TensorWorkPtr InProcessCommunicator::irecv_tensor(int src, int tag, const c10::Device& device) {
  return post_receive(at::Tensor(), src, tag, device, "irecv_tensor");
}

std::shared_ptr<TensorWork> InProcessCommunicator::post_receive(const at::Tensor& tensor, int src,
                                                                int tag, const c10::Device& device,
                                                                const char* what) {
  detail::check_peer(src, size(), strata::detail::concat(what, " src").c_str());
  detail::check_tag(tag, what);
  auto pending = std::make_shared<detail::InProcessPendingRecv>();
  {
    std::lock_guard<std::mutex> lock(group_->job->mutex);
    throw_if_aborted(*group_->job);
    auto& mailbox = group_->mailboxes[{src, rank_, tag}];
    if (mailbox.messages.empty()) {
      mailbox.receivers.push_back(pending);
    } else {
      pending->message = std::move(mailbox.messages.front());
      pending->arrived = true;
      mailbox.messages.pop_front();
    }
  }
  return std::make_shared<InProcessRecvWork>(group_, pending, tensor, src, tag, rank_, device);
}

WorkPtr InProcessCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  const int size = this->size();
  return submit("allreduce", [&] {
    detail::check_defined(tensor, "allreduce tensor");
    detail::check_reduce_op(tensor.scalar_type(), op, "allreduce");
    Collective c;
    c.slot.signature = describe(tensor) + " " + to_string(op);
    c.slot.input = tensor.contiguous();  // read as flat chunks
    // Rank r reduces chunk r of every rank's tensor; then every rank gathers the chunks.
    auto chunk = [numel = tensor.numel(), size](const at::Tensor& flat, int r) {
      return flat.slice(0, numel * r / size, numel * (r + 1) / size);
    };
    c.read = [chunk, size, op, rank = rank_](const Slots& slots, InProcessSlot& mine) {
      mine.partial =
          reduce_parts(size, op, [&](int q) { return chunk(slots[q].input.view(-1), rank); });
    };
    c.write = [chunk, size, tensor](const Slots& slots) {
      at::Tensor flat =
          tensor.is_contiguous() ? tensor.view(-1) : at::empty({tensor.numel()}, tensor.options());
      for (int q = 0; q < size; ++q) chunk(flat, q).copy_(slots[q].partial);
      if (!tensor.is_contiguous()) tensor.copy_(flat.view(tensor.sizes()));
    };
    return c;
  });
}

WorkPtr InProcessCommunicator::broadcast(at::Tensor& tensor, int root) {
  return submit("broadcast", [&] {
    detail::check_defined(tensor, "broadcast tensor");
    detail::check_peer(root, size(), "broadcast root");
    Collective c;
    c.slot.signature = strata::detail::concat(describe(tensor), " root ", root);
    c.slot.input = tensor;
    c.read = [tensor, root, rank = rank_](const Slots& slots, InProcessSlot&) {
      if (rank != root) tensor.copy_(slots[root].input);
    };
    return c;
  });
}

WorkPtr InProcessCommunicator::allgather(const at::Tensor& input, at::Tensor& output) {
  return submit("allgather", [&] {
    detail::check_allgather(input, output, size());
    Collective c;
    c.slot.signature = describe(input);
    c.slot.input = input;
    c.read = [output](const Slots& slots, InProcessSlot&) {
      for (size_t q = 0; q < slots.size(); ++q) output.select(0, q).copy_(slots[q].input);
    };
    return c;
  });
}

WorkPtr InProcessCommunicator::reduce_scatter(const at::Tensor& input, at::Tensor& output,
                                              ReduceOp op) {
  const int size = this->size();
  return submit("reduce_scatter", [&] {
    detail::check_reduce_scatter(input, output, size, op);
    Collective c;
    c.slot.signature = describe(input) + " " + to_string(op);
    c.slot.input = input;
    c.read = [output, size, op, rank = rank_](const Slots& slots, InProcessSlot&) {
      // Reduced in full before writing: output may be a view of this rank's own input row.
      output.copy_(reduce_parts(size, op, [&](int q) { return slots[q].input.select(0, rank); }));
    };
    return c;
  });
}

WorkPtr InProcessCommunicator::alltoall(const at::Tensor& input, at::Tensor& output,
                                        const std::vector<int64_t>& send_splits,
                                        const std::vector<int64_t>& recv_splits) {
  return submit("alltoall", [&] {
    Collective c;
    c.slot.layout = detail::check_alltoall(input, output, send_splits, recv_splits, size());
    c.slot.signature = strata::detail::concat(c10::toString(input.scalar_type()), " rows of ",
                                              detail::shape_string(input.sizes().slice(1)));
    c.slot.input = input;
    c.agree = [](const Slots& slots) {
      for (size_t p = 0; p < slots.size(); ++p) {
        for (size_t q = 0; q < slots.size(); ++q) {
          int64_t sent = slots[p].layout.send_rows[q], expected = slots[q].layout.recv_rows[p];
          STRATA_CHECK(sent == expected, "alltoall: rank ", p, " sends ", sent, " rows to rank ", q,
                       ", which expects ", expected);
        }
      }
    };
    c.read = [output, rank = rank_](const Slots& slots, InProcessSlot& mine) {
      for (size_t q = 0; q < slots.size(); ++q) {
        const auto& sender = slots[q].layout;
        output.narrow(0, mine.layout.recv_offsets[q], mine.layout.recv_rows[q])
            .copy_(slots[q].input.narrow(0, sender.send_offsets[rank], sender.send_rows[rank]));
      }
    };
    return c;
  });
}

WorkPtr InProcessCommunicator::barrier() {
  return submit("barrier", [] { return Collective{}; });
}

std::shared_ptr<Communicator> InProcessCommunicator::split(int color, int key) {
  auto result = std::make_shared<std::shared_ptr<InProcessCommunicator>>();
  auto work = submit("split", [&] {
    Collective c;
    c.slot.color = color < 0 ? -1 : color;
    c.slot.key = key;
    if (color < 0) return c;
    // The new group's first rank makes its shared state; the others pick it up after.
    c.read = [job = group_->job, color, rank = rank_](const Slots& slots, InProcessSlot& mine) {
      auto members = split_members(slots, color);
      if (members.front() == rank) {
        mine.new_group = std::make_shared<InProcessGroup>(job, static_cast<int>(members.size()));
      }
    };
    c.write = [result, color, rank = rank_](const Slots& slots) {
      auto members = split_members(slots, color);
      int new_rank =
          static_cast<int>(std::find(members.begin(), members.end(), rank) - members.begin());
      *result = std::shared_ptr<InProcessCommunicator>(
          new InProcessCommunicator(slots[members.front()].new_group, new_rank));
    };
    return c;
  });
  work->wait();
  return std::move(*result);
}

}  // namespace strata::parallel
