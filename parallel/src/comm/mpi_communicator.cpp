#include "strata/parallel/comm/mpi_communicator.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>

#include "communicator_checks.h"
#include "staged_tensor.h"
#include "strata/core/error.h"

namespace strata::parallel {
namespace {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

// Throws strata::Error naming the failed call when an MPI call does not return MPI_SUCCESS
// (our communicators use MPI_ERRORS_RETURN, so errors come back instead of aborting).
void mpi_check(int code, const std::string& what) {
  if (code != MPI_SUCCESS) STRATA_FAIL(what, ": ", mpi_error_string(code));
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "unknown";
}

// ---- MPI datatypes and reduction ops for dtypes MPI lacks -----------------------------

// Reduction functions for 2-byte floats, computed in float like LibTorch's CPU kernels.
struct Add {
  float operator()(float a, float b) const { return a + b; }
};
struct Max {
  float operator()(float a, float b) const { return std::max(a, b); }
};
struct Min {
  float operator()(float a, float b) const { return std::min(a, b); }
};

template <typename T, typename Combine>
void combine_elements(void* in, void* inout, int* length, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *length; ++i) {
    b[i] = T(Combine{}(static_cast<float>(a[i]), static_cast<float>(b[i])));
  }
}

// The user-defined datatype and ops, made once after MPI is initialized. Freed before
// MPI_Finalize when we finalize; when the program finalizes MPI itself, MPI frees them.
struct CustomTypes {
  MPI_Datatype two_bytes = MPI_DATATYPE_NULL;                        // c10::Half and c10::BFloat16
  MPI_Op half_ops[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};      // sum, max, min
  MPI_Op bfloat16_ops[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};  // sum, max, min
};

std::mutex custom_types_mutex;
CustomTypes* custom_types_instance = nullptr;

template <typename T>
void create_ops(MPI_Op (&ops)[3]) {
  mpi_check(MPI_Op_create(&combine_elements<T, Add>, 1, &ops[0]), "MPI_Op_create");
  mpi_check(MPI_Op_create(&combine_elements<T, Max>, 1, &ops[1]), "MPI_Op_create");
  mpi_check(MPI_Op_create(&combine_elements<T, Min>, 1, &ops[2]), "MPI_Op_create");
}

const CustomTypes& custom_types() {
  std::lock_guard<std::mutex> lock(custom_types_mutex);
  if (!custom_types_instance) {
    auto types = std::make_unique<CustomTypes>();
    mpi_check(MPI_Type_contiguous(2, MPI_BYTE, &types->two_bytes), "MPI_Type_contiguous");
    mpi_check(MPI_Type_commit(&types->two_bytes), "MPI_Type_commit");
    create_ops<c10::Half>(types->half_ops);
    create_ops<c10::BFloat16>(types->bfloat16_ops);
    custom_types_instance = types.release();
  }
  return *custom_types_instance;
}

void free_custom_types() {
  std::lock_guard<std::mutex> lock(custom_types_mutex);
  if (!custom_types_instance) return;
  for (MPI_Op* ops : {custom_types_instance->half_ops, custom_types_instance->bfloat16_ops}) {
    for (int i = 0; i < 3; ++i) MPI_Op_free(&ops[i]);
  }
  MPI_Type_free(&custom_types_instance->two_bytes);
  delete custom_types_instance;
  custom_types_instance = nullptr;
}

MPI_Datatype mpi_datatype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kHalf:
    case at::kBFloat16: return custom_types().two_bytes;
    case at::kChar: return MPI_INT8_T;
    case at::kShort: return MPI_INT16_T;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kBool: return MPI_C_BOOL;
    case at::kComplexFloat: return MPI_C_FLOAT_COMPLEX;
    case at::kComplexDouble: return MPI_C_DOUBLE_COMPLEX;
    default:
      STRATA_FAIL("mpi backend dtype: got ", c10::toString(dtype),
                  ", expected one of Float, Double, Half, BFloat16, Char, Short, Int, "
                  "Long, Byte, Bool, ComplexFloat, ComplexDouble");
  }
}

// Avg reduces with the sum and divides afterwards. Bool has MPI's logical ops: sum and max
// are "any", min is "all".
MPI_Op mpi_op(at::ScalarType dtype, ReduceOp op) {
  const int index = op == ReduceOp::Max ? 1 : op == ReduceOp::Min ? 2 : 0;
  if (dtype == at::kHalf) return custom_types().half_ops[index];
  if (dtype == at::kBFloat16) return custom_types().bfloat16_ops[index];
  if (dtype == at::kBool) return index == 2 ? MPI_LAND : MPI_LOR;
  const MPI_Op native[3] = {MPI_SUM, MPI_MAX, MPI_MIN};
  return native[index];
}

// ---- Initialization and finalization --------------------------------------------------

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  free_custom_types();
  MPI_Finalize();
}

void ensure_mpi_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    // Registered now, before world()'s static communicator finishes construction, so it
    // runs after that communicator is destroyed: MPI_Finalize comes after MPI_Comm_free.
    std::atexit(finalize_at_exit);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  STRATA_CHECK(!finalized, "MPI state: got finalized, expected initialized");
  int provided = 0;
  MPI_Query_thread(&provided);
  // Works are polled from whatever thread the caller is on (autograd hooks, for one).
  STRATA_CHECK(provided == MPI_THREAD_MULTIPLE, "MPI thread support: got ",
               thread_level_name(provided), ", expected MPI_THREAD_MULTIPLE");
}

// OpenMPI's non-blocking allreduce (coll/libnbc) picks recursive doubling by default. Here,
// between 2 ranks, a float MPI_Iallreduce + MPI_Wait took 0.39 ms for 1 MB and 18 ms for
// 24 MB, against 0.19 and 5.5 ms for the blocking MPI_Allreduce; with libnbc's ring
// algorithm it matched the blocking call (and beat the default with 4 ranks too). MPI needs
// every rank of a collective to pick the same algorithm: world() is called by every rank,
// so only it sets this. A value the user gave (mpirun --mca, the environment) wins; other
// MPIs lack the variable, and nothing happens.
void prefer_ring_iallreduce() {
  if (std::getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm")) return;
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) return;
  int index = 0;
  if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &index) == MPI_SUCCESS) {
    MPI_T_cvar_handle handle;
    int count = 0;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) == MPI_SUCCESS) {
      const int ring = 1;
      MPI_T_cvar_write(handle, &ring);
      MPI_T_cvar_handle_free(&handle);
    }
  }
  MPI_T_finalize();
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// ---- Tensors --------------------------------------------------------------------------

void check_cpu(const at::Tensor& tensor, const char* what) {
  detail::check_defined(tensor, what);
  STRATA_CHECK(tensor.device().is_cpu(), "mpi ", what, " device: got ", tensor.device(),
               ", expected cpu");
}

// MPI counts are ints. Checked before any copy: a huge tensor fails at once.
int mpi_count(int64_t numel, const char* what) {
  STRATA_CHECK(numel <= INT_MAX, "mpi ", what, ": got ", numel, " elements, expected at most ",
               INT_MAX, " (MPI counts are ints)");
  return static_cast<int>(numel);
}

// ---- Work -----------------------------------------------------------------------------

// One MPI request and what to do once it has completed (copy results back, divide an
// average, check a received count). Holds the tensors MPI reads or writes until then.
class MpiWork final : public Work {
 public:
  using Finish = std::function<void(const MPI_Status&)>;

  MpiWork(std::string what, std::vector<at::Tensor> tensors, Finish finish)
      : what_(std::move(what)), tensors_(std::move(tensors)), finish_(std::move(finish)) {}

  // Dropping a work in flight would let MPI write into freed memory: wait for it first.
  ~MpiWork() override {
    if (!done_ && !mpi_finalized()) {
      MPI_Status status;
      MPI_Wait(&request_, &status);
    }
  }

  MPI_Request* request() { return &request_; }
  const std::string& what() const { return what_; }

  void wait() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!done_) {
        MPI_Status status;
        int code = MPI_Wait(&request_, &status);
        complete(code, status);
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

  bool is_completed() override {
    if (done_) return true;
    // Another thread is in wait() or is_completed(): report "not yet" rather than block.
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || done_) return done_;
    int flag = 0;
    MPI_Status status;
    int code = MPI_Test(&request_, &flag, &status);
    if (code != MPI_SUCCESS || flag) complete(code, status);
    return done_;
  }

 private:
  void complete(int code, const MPI_Status& status) {
    try {
      mpi_check(code, what_);
      if (finish_) finish_(status);
    } catch (...) {
      error_ = std::current_exception();
    }
    finish_ = nullptr;
    tensors_.clear();
    done_ = true;
  }

  std::string what_;
  std::vector<at::Tensor> tensors_;
  Finish finish_;
  std::mutex mutex_;
  std::atomic<bool> done_{false};
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::exception_ptr error_;
};

// Starts `call` on a new work's request.
WorkPtr start(std::shared_ptr<MpiWork> work, const std::function<int(MPI_Request*)>& call) {
  mpi_check(call(work->request()), work->what());
  return work;
}

std::string describe(const char* op, const at::Tensor& tensor) {
  return strata::detail::concat(op, " of ", tensor.numel(), " elements of ",
                                c10::toString(tensor.scalar_type()));
}

}  // namespace

// ---- MpiCommunicator ------------------------------------------------------------------

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  static const std::shared_ptr<MpiCommunicator> instance = [] {
    ensure_mpi_initialized();
    prefer_ring_iallreduce();
    return from_comm(MPI_COMM_WORLD);
  }();
  return instance;
}

std::shared_ptr<MpiCommunicator> MpiCommunicator::from_comm(MPI_Comm comm) {
  ensure_mpi_initialized();
  MPI_Comm dup = MPI_COMM_NULL;
  mpi_check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup");
  return std::shared_ptr<MpiCommunicator>(new MpiCommunicator(dup));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  // Errors come back as return codes, which we turn into strata::Error, instead of
  // aborting the job.
  mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  // A communicator that outlives MPI_Finalize (a static one, when the program finalized
  // MPI itself) has nothing left to free.
  if (!mpi_finalized()) MPI_Comm_free(&comm_);
}

WorkPtr MpiCommunicator::isend(const at::Tensor& tensor, int dst, int tag) {
  check_cpu(tensor, "isend tensor");
  detail::check_peer(dst, size_, "isend dst");
  detail::check_tag(tag, "isend");
  // Empty messages are sent too: the receiver's count check then catches a mismatch.
  int count = mpi_count(tensor.numel(), "isend tensor");
  at::Tensor buffer = tensor.contiguous();
  MPI_Datatype type = mpi_datatype(buffer.scalar_type());
  auto work = std::make_shared<MpiWork>(
      strata::detail::concat(describe("isend", tensor), " to rank ", dst, " (tag ", tag, ")"),
      std::vector<at::Tensor>{buffer}, nullptr);
  return start(work, [&](MPI_Request* request) {
    return MPI_Isend(buffer.data_ptr(), count, type, dst, tag, comm_, request);
  });
}

WorkPtr MpiCommunicator::irecv(at::Tensor& tensor, int src, int tag) {
  check_cpu(tensor, "irecv tensor");
  detail::check_peer(src, size_, "irecv src");
  detail::check_tag(tag, "irecv");
  int count = mpi_count(tensor.numel(), "irecv tensor");
  detail::StagedTensor staged = detail::stage(tensor, false);
  MPI_Datatype type = mpi_datatype(tensor.scalar_type());
  auto work = std::make_shared<MpiWork>(
      strata::detail::concat(describe("irecv", tensor), " from rank ", src, " (tag ", tag, ")"),
      std::vector<at::Tensor>{staged.buffer},
      [staged, type, count, src, tag](const MPI_Status& status) {
        int received = 0;
        mpi_check(MPI_Get_count(&status, type, &received), "MPI_Get_count");
        // MPI_UNDEFINED: a byte count that is no multiple of the dtype's size.
        detail::check_received_numel(received == MPI_UNDEFINED ? -1 : received, count, src, tag);
        staged.copy_back();
      });
  return start(work, [&](MPI_Request* request) {
    return MPI_Irecv(staged.buffer.data_ptr(), count, type, src, tag, comm_, request);
  });
}

WorkPtr MpiCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  check_cpu(tensor, "allreduce tensor");
  detail::check_reduce_op(tensor.scalar_type(), op, "allreduce");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  int count = mpi_count(tensor.numel(), "allreduce tensor");
  detail::StagedTensor staged = detail::stage(tensor, true);
  MPI_Datatype type = mpi_datatype(tensor.scalar_type());
  MPI_Op mpi_reduce = mpi_op(tensor.scalar_type(), op);
  const int size = size_;
  auto work = std::make_shared<MpiWork>(describe("allreduce", tensor),
                                        std::vector<at::Tensor>{staged.buffer},
                                        [staged, op, size](const MPI_Status&) {
                                          if (op == ReduceOp::Avg) staged.buffer.div_(size);
                                          staged.copy_back();
                                        });
  return start(work, [&](MPI_Request* request) {
    return MPI_Iallreduce(MPI_IN_PLACE, staged.buffer.data_ptr(), count, type, mpi_reduce, comm_,
                          request);
  });
}

WorkPtr MpiCommunicator::broadcast(at::Tensor& tensor, int root) {
  check_cpu(tensor, "broadcast tensor");
  detail::check_peer(root, size_, "broadcast root");
  if (tensor.numel() == 0) return std::make_shared<CompletedWork>();
  int count = mpi_count(tensor.numel(), "broadcast tensor");
  const bool is_root = root == rank_;
  detail::StagedTensor staged = detail::stage(tensor, is_root);
  if (is_root) staged.target = at::Tensor();  // the root's tensor does not change
  MPI_Datatype type = mpi_datatype(tensor.scalar_type());
  auto work = std::make_shared<MpiWork>(describe("broadcast", tensor),
                                        std::vector<at::Tensor>{staged.buffer},
                                        [staged](const MPI_Status&) { staged.copy_back(); });
  return start(work, [&](MPI_Request* request) {
    return MPI_Ibcast(staged.buffer.data_ptr(), count, type, root, comm_, request);
  });
}

WorkPtr MpiCommunicator::allgather(const at::Tensor& input, at::Tensor& output) {
  check_cpu(input, "allgather input");
  check_cpu(output, "allgather output");
  detail::check_allgather(input, output, size_);
  if (input.numel() == 0) return std::make_shared<CompletedWork>();
  int count = mpi_count(input.numel(), "allgather input");
  mpi_count(output.numel(), "allgather output");
  at::Tensor send = input.contiguous();
  detail::StagedTensor staged = detail::stage(output, false);
  MPI_Datatype type = mpi_datatype(input.scalar_type());
  auto work = std::make_shared<MpiWork>(describe("allgather", input),
                                        std::vector<at::Tensor>{send, staged.buffer},
                                        [staged](const MPI_Status&) { staged.copy_back(); });
  return start(work, [&](MPI_Request* request) {
    return MPI_Iallgather(send.data_ptr(), count, type, staged.buffer.data_ptr(), count, type,
                          comm_, request);
  });
}

WorkPtr MpiCommunicator::reduce_scatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) {
  check_cpu(input, "reduce_scatter input");
  check_cpu(output, "reduce_scatter output");
  detail::check_reduce_scatter(input, output, size_, op);
  if (output.numel() == 0) return std::make_shared<CompletedWork>();
  mpi_count(input.numel(), "reduce_scatter input");
  int count = mpi_count(output.numel(), "reduce_scatter output");
  at::Tensor send = input.contiguous();
  detail::StagedTensor staged = detail::stage(output, false);
  MPI_Datatype type = mpi_datatype(output.scalar_type());
  MPI_Op mpi_reduce = mpi_op(output.scalar_type(), op);
  const int size = size_;
  auto work = std::make_shared<MpiWork>(describe("reduce_scatter", output),
                                        std::vector<at::Tensor>{send, staged.buffer},
                                        [staged, op, size](const MPI_Status&) {
                                          if (op == ReduceOp::Avg) staged.buffer.div_(size);
                                          staged.copy_back();
                                        });
  return start(work, [&](MPI_Request* request) {
    return MPI_Ireduce_scatter_block(send.data_ptr(), staged.buffer.data_ptr(), count, type,
                                     mpi_reduce, comm_, request);
  });
}

WorkPtr MpiCommunicator::alltoall(const at::Tensor& input, at::Tensor& output,
                                  const std::vector<int64_t>& send_splits,
                                  const std::vector<int64_t>& recv_splits) {
  check_cpu(input, "alltoall input");
  check_cpu(output, "alltoall output");
  auto layout = detail::check_alltoall(input, output, send_splits, recv_splits, size_);
  // Rows of no elements on every rank (the row shape must agree). Empty dim 0 on this rank
  // alone is no reason to skip: other ranks may still exchange rows among themselves.
  if (layout.row_numel == 0) return std::make_shared<CompletedWork>();
  mpi_count(input.numel(), "alltoall input");
  mpi_count(output.numel(), "alltoall output");
  // MPI reads the count and displacement arrays until the operation completes.
  struct Counts {
    std::vector<int> send_counts, send_offsets, recv_counts, recv_offsets;
  };
  // Element counts fit ints: neither tensor has more than INT_MAX elements.
  auto elements = [&](const std::vector<int64_t>& rows) {
    std::vector<int> out(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) out[r] = static_cast<int>(rows[r] * layout.row_numel);
    return out;
  };
  auto counts =
      std::make_shared<Counts>(Counts{elements(layout.send_rows), elements(layout.send_offsets),
                                      elements(layout.recv_rows), elements(layout.recv_offsets)});
  at::Tensor send = input.contiguous();
  detail::StagedTensor staged = detail::stage(output, false);
  MPI_Datatype type = mpi_datatype(input.scalar_type());
  auto work = std::make_shared<MpiWork>(
      describe("alltoall", input), std::vector<at::Tensor>{send, staged.buffer},
      [staged, counts](const MPI_Status&) { staged.copy_back(); });
  return start(work, [&](MPI_Request* request) {
    return MPI_Ialltoallv(send.data_ptr(), counts->send_counts.data(), counts->send_offsets.data(),
                          type, staged.buffer.data_ptr(), counts->recv_counts.data(),
                          counts->recv_offsets.data(), type, comm_, request);
  });
}

WorkPtr MpiCommunicator::barrier() {
  auto work = std::make_shared<MpiWork>("barrier", std::vector<at::Tensor>{}, nullptr);
  return start(work, [&](MPI_Request* request) { return MPI_Ibarrier(comm_, request); });
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm comm = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &comm),
            strata::detail::concat("split (color ", color, ", key ", key, ")"));
  if (comm == MPI_COMM_NULL) return nullptr;
  return std::shared_ptr<MpiCommunicator>(new MpiCommunicator(comm));
}

void abort_mpi_job(int exit_code) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized || mpi_finalized()) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

}  // namespace strata::parallel
