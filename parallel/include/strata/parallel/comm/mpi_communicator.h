#pragma once
// MPI backend: CPU tensors between the processes of an mpirun job.
//
// Every operation starts a non-blocking MPI call (MPI_Isend, MPI_Iallreduce, ...) and
// returns at once; Work::wait() is MPI_Wait and Work::is_completed() is MPI_Test, which also
// makes progress, so code that polls is_completed() (from autograd hooks, say) moves the
// operation along. MPI must provide MPI_THREAD_MULTIPLE: works may be polled from any thread.

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

class MpiCommunicator final : public Communicator {
 public:
  // The job's world: a duplicate of MPI_COMM_WORLD, made on the first call (a collective
  // call: every rank makes it) and returned by every later one. Initializes MPI with
  // MPI_THREAD_MULTIPLE when nobody has, and then finalizes it at exit.
  static std::shared_ptr<MpiCommunicator> world();
  // A communicator over a duplicate of `comm` (collective over comm), for programs that
  // already have MPI communicators of their own. MPI must be initialized.
  static std::shared_ptr<MpiCommunicator> from_comm(MPI_Comm comm);

  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  // The underlying communicator, for calls this interface lacks. Still owned by this object.
  MPI_Comm comm() const { return comm_; }

  WorkPtr isend(const at::Tensor& tensor, int dst, int tag = 0) override;
  WorkPtr irecv(at::Tensor& tensor, int src, int tag = 0) override;
  WorkPtr allreduce(at::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr broadcast(at::Tensor& tensor, int root) override;
  WorkPtr allgather(const at::Tensor& input, at::Tensor& output) override;
  WorkPtr reduce_scatter(const at::Tensor& input, at::Tensor& output,
                         ReduceOp op = ReduceOp::Sum) override;
  WorkPtr alltoall(const at::Tensor& input, at::Tensor& output,
                   const std::vector<int64_t>& send_splits = {},
                   const std::vector<int64_t>& recv_splits = {}) override;
  WorkPtr barrier() override;
  std::shared_ptr<Communicator> split(int color, int key) override;

 private:
  // Takes ownership of `comm` (freed in the destructor).
  explicit MpiCommunicator(MPI_Comm comm);

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 0;
};

// Ends every rank of the job (MPI_Abort on MPI_COMM_WORLD with `exit_code`) when MPI is
// initialized and not finalized and the job has more than one rank; returns otherwise.
void abort_mpi_job(int exit_code);

}  // namespace strata::parallel
