#include "strata/parallel/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>

#include "communicator_checks.h"
#include "staged_tensor.h"
#include "strata/core/error.h"
#include "strata/parallel/comm/mpi_communicator.h"
#include "strata/parallel/control/control_store.h"

// ncclAvg and ncclBfloat16 arrived in NCCL 2.10.
static_assert(NCCL_VERSION_CODE >= 21000, "the NCCL backend needs NCCL >= 2.10");
static_assert(sizeof(ncclUniqueId) == sizeof(strata::parallel::NcclUniqueId),
              "NcclUniqueId must hold an ncclUniqueId");

#define STRATA_NCCL_CHECK(call)                                               \
  do {                                                                        \
    ncclResult_t strata_result_ = (call);                                     \
    if (strata_result_ != ncclSuccess)                                        \
      STRATA_FAIL("nccl: ", #call, ": ", ncclGetErrorString(strata_result_)); \
  } while (0)

#define STRATA_CUDA_CHECK(call)                                              \
  do {                                                                       \
    cudaError_t strata_error_ = (call);                                      \
    if (strata_error_ != cudaSuccess)                                        \
      STRATA_FAIL("cuda: ", #call, ": ", cudaGetErrorString(strata_error_)); \
  } while (0)

namespace strata::parallel {
namespace {

// Makes `device` current for its lifetime; callers' current device is theirs.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    STRATA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) STRATA_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

class Event {
 public:
  Event() { STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(event_); }  // released by CUDA once recorded work is done
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace

namespace detail {

struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
  float* barrier_value = nullptr;  // one float on the device: barrier() all-reduces it

  // Takes ownership of `comm_`, also when it throws.
  NcclState(ncclComm_t comm_, int device_) : comm(comm_), device(device_) {
    try {
      DeviceGuard guard(device);
      STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      STRATA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&barrier_value), sizeof(float)));
      STRATA_CUDA_CHECK(cudaMemset(barrier_value, 0, sizeof(float)));
    } catch (...) {
      release();
      throw;
    }
  }
  ~NcclState() { release(); }

  // Never throws: runs in destructors.
  void release() noexcept {
    int previous = 0;
    bool switched = cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(device) == cudaSuccess;
    if (stream) cudaStreamSynchronize(stream);
    if (comm) ncclCommDestroy(comm);
    if (barrier_value) cudaFree(barrier_value);
    if (stream) cudaStreamDestroy(stream);
    comm = nullptr;
    barrier_value = nullptr;
    stream = nullptr;
    if (switched) cudaSetDevice(previous);
  }
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;
};

}  // namespace detail

namespace {

using detail::NcclState;

// Done when the operation's event has been reached on the communicator's stream.
class NcclWork final : public Work {
 public:
  NcclWork(std::unique_ptr<Event> done, int device, std::vector<at::Tensor> tensors,
           std::function<void()> finish)
      : done_(std::move(done)),
        device_(device),
        tensors_(std::move(tensors)),
        finish_(std::move(finish)) {}

  // The tensors must outlive the stream's use of them: a work dropped in flight waits.
  ~NcclWork() override {
    if (!finished_) cudaEventSynchronize(done_->get());
  }

  void wait() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!finished_) {
        run([&] {
          DeviceGuard guard(device_);
          STRATA_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, done_->get(), 0));
          STRATA_CUDA_CHECK(cudaEventSynchronize(done_->get()));
        });
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

  bool is_completed() override {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return false;  // another thread is in wait()
    if (finished_) return true;
    cudaError_t state = cudaEventQuery(done_->get());
    if (state == cudaErrorNotReady) return false;
    run([&] {
      STRATA_CUDA_CHECK(state);
      DeviceGuard guard(device_);
      // Later work on the default stream comes after the operation, as after wait().
      STRATA_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, done_->get(), 0));
    });
    return true;
  }

 private:
  // Mutex held: `sync`, then the finishing step (copy back), once.
  void run(const std::function<void()>& sync) {
    try {
      sync();
      DeviceGuard guard(device_);
      if (finish_) finish_();
    } catch (...) {
      error_ = std::current_exception();
    }
    finish_ = nullptr;
    tensors_.clear();
    finished_ = true;
  }

  std::unique_ptr<Event> done_;
  int device_;
  std::vector<at::Tensor> tensors_;
  std::function<void()> finish_;
  std::mutex mutex_;
  bool finished_ = false;
  std::exception_ptr error_;
};

// Enqueues NCCL calls on the state's stream, after the work already on the default
// stream, and returns a work that completes with them.
WorkPtr launch(NcclState& state, std::vector<at::Tensor> tensors, std::function<void()> finish,
               const std::function<void()>& enqueue) {
  DeviceGuard guard(state.device);
  {
    Event ready;
    STRATA_CUDA_CHECK(cudaEventRecord(ready.get(), cudaStreamLegacy));
    STRATA_CUDA_CHECK(cudaStreamWaitEvent(state.stream, ready.get(), 0));
  }
  enqueue();
  auto done = std::make_unique<Event>();
  STRATA_CUDA_CHECK(cudaEventRecord(done->get(), state.stream));
  return std::make_shared<NcclWork>(std::move(done), state.device, std::move(tensors),
                                    std::move(finish));
}

void check_cuda(const at::Tensor& tensor, int device, const char* what) {
  detail::check_defined(tensor, what);
  STRATA_CHECK(tensor.is_cuda() && tensor.get_device() == device, "nccl ", what, " device: got ",
               tensor.device(), ", expected cuda:", device);
}

// For reductions. Bool is bytes of 0 or 1, reduced with max ("or") and min ("and").
ncclDataType_t nccl_reduce_type(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kChar: return ncclInt8;
    case at::kByte:
    case at::kBool: return ncclUint8;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    default:
      STRATA_FAIL("nccl reduction dtype: got ", c10::toString(dtype),
                  ", expected one of Float, Double, Half, BFloat16, Char, Byte, Bool, Int, "
                  "Long");
  }
}

ncclRedOp_t nccl_reduce_op(at::ScalarType dtype, ReduceOp op) {
  if (dtype == at::kBool) return op == ReduceOp::Min ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

// Data that only moves (sends, broadcasts, gathers) moves as bytes, so every dtype does.
size_t byte_count(const at::Tensor& tensor) {
  return static_cast<size_t>(tensor.numel()) * tensor.element_size();
}

char* bytes_of(const at::Tensor& tensor) { return static_cast<char*>(tensor.data_ptr()); }

std::unique_ptr<NcclState> init_state(int rank, int size, const NcclUniqueId& id, int device) {
  STRATA_CHECK(size >= 1, "nccl size: got ", size, ", expected >= 1");
  detail::check_peer(rank, size, "nccl rank");
  STRATA_CHECK(device >= 0, "nccl device: got ", device, ", expected >= 0");
  ncclUniqueId nccl_id;
  std::memcpy(&nccl_id, id.bytes.data(), sizeof(nccl_id));
  DeviceGuard guard(device);
  ncclComm_t comm = nullptr;
  STRATA_NCCL_CHECK(ncclCommInitRank(&comm, size, nccl_id, rank));
  return std::make_unique<NcclState>(comm, device);
}

}  // namespace

// ---- NcclCommunicator -----------------------------------------------------------------

NcclUniqueId NcclCommunicator::make_unique_id() {
  ncclUniqueId nccl_id;
  STRATA_NCCL_CHECK(ncclGetUniqueId(&nccl_id));
  NcclUniqueId id;
  std::memcpy(id.bytes.data(), &nccl_id, sizeof(nccl_id));
  return id;
}

NcclCommunicator::NcclCommunicator(int rank, int size, const NcclUniqueId& id, int device)
    : NcclCommunicator(init_state(rank, size, id, device)) {}

NcclCommunicator::NcclCommunicator(std::unique_ptr<detail::NcclState> state)
    : state_(std::move(state)) {
  STRATA_NCCL_CHECK(ncclCommUserRank(state_->comm, &rank_));
  STRATA_NCCL_CHECK(ncclCommCount(state_->comm, &size_));
}

NcclCommunicator::~NcclCommunicator() = default;

std::shared_ptr<NcclCommunicator> NcclCommunicator::create_from_mpi(Communicator& bootstrap,
                                                                    int device) {
  NcclUniqueId id;
  at::Tensor bytes = at::zeros({static_cast<int64_t>(id.bytes.size())}, at::kByte);
  if (bootstrap.rank() == 0) {
    id = make_unique_id();
    std::memcpy(bytes.data_ptr(), id.bytes.data(), id.bytes.size());
  }
  bootstrap.broadcast(bytes, 0)->wait();
  std::memcpy(id.bytes.data(), bytes.data_ptr(), id.bytes.size());
  return std::make_shared<NcclCommunicator>(bootstrap.rank(), bootstrap.size(), id, device);
}

std::shared_ptr<NcclCommunicator> NcclCommunicator::create_from_store(ControlStoreClient& store,
                                                                      int rank, int size,
                                                                      int device,
                                                                      const std::string& key) {
  NcclUniqueId id;
  if (rank == 0) {
    id = make_unique_id();
    store.set(key, std::string(id.bytes.data(), id.bytes.size()));
  } else {
    const std::string bytes = store.get(key);
    STRATA_CHECK(bytes.size() == id.bytes.size(), "NCCL unique id under store key '", key,
                 "': ", bytes.size(), " bytes, expected ", id.bytes.size());
    std::memcpy(id.bytes.data(), bytes.data(), id.bytes.size());
  }
  return std::make_shared<NcclCommunicator>(rank, size, id, device);
}

std::shared_ptr<NcclCommunicator> NcclCommunicator::create_world(const BackendContext& context) {
  int devices = 0;
  STRATA_CUDA_CHECK(cudaGetDeviceCount(&devices));
  STRATA_CHECK(devices > 0, "nccl world devices: got 0, expected a visible CUDA device");
  // The rank on this host, as strata-run (LOCAL_RANK) or mpirun says.
  auto device = [devices](int rank) {
    for (const char* name : {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"}) {
      if (const char* local = std::getenv(name)) return std::atoi(local) % devices;
    }
    return rank % devices;
  };
  if (!context.store_address.empty()) {
    ControlStoreClient store(context.store_address);
    return create_from_store(store, context.rank, context.world_size, device(context.rank),
                             "world/nccl_unique_id");
  }
  auto world = MpiCommunicator::world();
  return create_from_mpi(*world, device(world->rank()));
}

int NcclCommunicator::device() const { return state_->device; }

// NCCL has no tags: messages between two ranks match in the order they were sent, and
// the receiver's size is not checked against the sender's.
WorkPtr NcclCommunicator::isend(const at::Tensor& tensor, int dst, int tag) {
  check_cuda(tensor, state_->device, "isend tensor");
  detail::check_peer(dst, size_, "isend dst");
  detail::check_tag(tag, "isend");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  at::Tensor buffer = tensor.contiguous();
  return launch(*state_, {buffer}, nullptr, [&] {
    STRATA_NCCL_CHECK(ncclSend(buffer.data_ptr(), byte_count(buffer), ncclUint8, dst, state_->comm,
                               state_->stream));
  });
}

WorkPtr NcclCommunicator::irecv(at::Tensor& tensor, int src, int tag) {
  check_cuda(tensor, state_->device, "irecv tensor");
  detail::check_peer(src, size_, "irecv src");
  detail::check_tag(tag, "irecv");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  auto staged = detail::stage(tensor, false);
  return launch(
      *state_, {staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        STRATA_NCCL_CHECK(ncclRecv(staged.buffer.data_ptr(), byte_count(staged.buffer), ncclUint8,
                                   src, state_->comm, state_->stream));
      });
}

WorkPtr NcclCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  check_cuda(tensor, state_->device, "allreduce tensor");
  detail::check_reduce_op(tensor.scalar_type(), op, "allreduce");
  ncclDataType_t type = nccl_reduce_type(tensor.scalar_type());
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  auto staged = detail::stage(tensor, true);
  return launch(
      *state_, {staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        STRATA_NCCL_CHECK(ncclAllReduce(
            staged.buffer.data_ptr(), staged.buffer.data_ptr(), static_cast<size_t>(tensor.numel()),
            type, nccl_reduce_op(tensor.scalar_type(), op), state_->comm, state_->stream));
      });
}

WorkPtr NcclCommunicator::broadcast(at::Tensor& tensor, int root) {
  check_cuda(tensor, state_->device, "broadcast tensor");
  detail::check_peer(root, size_, "broadcast root");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  const bool is_root = root == rank_;
  auto staged = detail::stage(tensor, is_root);
  if (is_root) staged.target = at::Tensor();  // the root's tensor does not change
  return launch(
      *state_, {staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        STRATA_NCCL_CHECK(ncclBroadcast(staged.buffer.data_ptr(), staged.buffer.data_ptr(),
                                        byte_count(staged.buffer), ncclUint8, root, state_->comm,
                                        state_->stream));
      });
}

WorkPtr NcclCommunicator::allgather(const at::Tensor& input, at::Tensor& output) {
  check_cuda(input, state_->device, "allgather input");
  check_cuda(output, state_->device, "allgather output");
  detail::check_allgather(input, output, size_);
  if (input.numel() == 0) return std::make_shared<CompletedWork>();
  at::Tensor send = input.contiguous();
  auto staged = detail::stage(output, false);
  return launch(
      *state_, {send, staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        STRATA_NCCL_CHECK(ncclAllGather(send.data_ptr(), staged.buffer.data_ptr(), byte_count(send),
                                        ncclUint8, state_->comm, state_->stream));
      });
}

WorkPtr NcclCommunicator::reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) {
  check_cuda(input, state_->device, "reduce_scatter input");
  check_cuda(output, state_->device, "reduce_scatter output");
  detail::check_reduce_scatter(input, output, size_, op);
  ncclDataType_t type = nccl_reduce_type(output.scalar_type());
  if (output.numel() == 0) return std::make_shared<CompletedWork>();
  at::Tensor send = input.contiguous();
  auto staged = detail::stage(output, false);
  return launch(
      *state_, {send, staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        STRATA_NCCL_CHECK(ncclReduceScatter(
            send.data_ptr(), staged.buffer.data_ptr(), static_cast<size_t>(output.numel()), type,
            nccl_reduce_op(output.scalar_type(), op), state_->comm, state_->stream));
      });
}

WorkPtr NcclCommunicator::alltoall(const at::Tensor& input, at::Tensor& output,
                                   const std::vector<int64_t>& send_splits,
                                   const std::vector<int64_t>& recv_splits) {
  check_cuda(input, state_->device, "alltoall input");
  check_cuda(output, state_->device, "alltoall output");
  auto layout = detail::check_alltoall(input, output, send_splits, recv_splits, size_);
  if (layout.row_numel == 0) return std::make_shared<CompletedWork>();
  at::Tensor send = input.contiguous();
  auto staged = detail::stage(output, false);
  const size_t row_bytes = static_cast<size_t>(layout.row_numel) * input.element_size();
  return launch(
      *state_, {send, staged.buffer}, [staged] { staged.copy_back(); },
      [&] {
        // One group: every pair's send and receive progress together, whatever the order.
        STRATA_NCCL_CHECK(ncclGroupStart());
        try {
          for (int peer = 0; peer < size_; ++peer) {
            // Both sides skip an empty exchange: sender and receiver agree on its size.
            if (layout.send_rows[peer] > 0) {
              STRATA_NCCL_CHECK(ncclSend(bytes_of(send) + layout.send_offsets[peer] * row_bytes,
                                         layout.send_rows[peer] * row_bytes, ncclUint8, peer,
                                         state_->comm, state_->stream));
            }
            if (layout.recv_rows[peer] > 0) {
              STRATA_NCCL_CHECK(
                  ncclRecv(bytes_of(staged.buffer) + layout.recv_offsets[peer] * row_bytes,
                           layout.recv_rows[peer] * row_bytes, ncclUint8, peer, state_->comm,
                           state_->stream));
            }
          }
        } catch (...) {
          ncclGroupEnd();
          throw;
        }
        STRATA_NCCL_CHECK(ncclGroupEnd());
      });
}

WorkPtr NcclCommunicator::barrier() {
  return launch(*state_, {}, nullptr, [&] {
    STRATA_NCCL_CHECK(ncclAllReduce(state_->barrier_value, state_->barrier_value, 1, ncclFloat32,
                                    ncclSum, state_->comm, state_->stream));
  });
}

std::shared_ptr<Communicator> NcclCommunicator::split(int color, int key) {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  DeviceGuard guard(state_->device);
  ncclComm_t comm = nullptr;
  // A null config: the new communicator inherits this one's.
  STRATA_NCCL_CHECK(
      ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &comm, nullptr));
  if (!comm) return nullptr;
  return std::shared_ptr<NcclCommunicator>(
      new NcclCommunicator(std::make_unique<NcclState>(comm, state_->device)));
#else
  STRATA_FAIL("nccl split: needs NCCL >= 2.18, got ", NCCL_MAJOR, ".", NCCL_MINOR);
#endif
}

}  // namespace strata::parallel
