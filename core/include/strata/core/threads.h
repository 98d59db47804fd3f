#pragma once
// Thread pools a rank uses: LibTorch's intra-op pool and the BLAS library's own pool.
// OpenBLAS starts one thread per core in every process unless told otherwise, so two
// ranks on two cores would each run two BLAS threads and fight over the cores.

namespace strata::core {

// Number of ranks of this job on this host (mpirun's OMPI_COMM_WORLD_LOCAL_SIZE, else 1).
int local_world_size();

// Cores of this host divided by the ranks on it, at least 1.
int default_threads_per_rank();

// Pins LibTorch's intra-op pool and the BLAS pool (OpenBLAS, when loaded) to `threads`.
void set_num_threads(int threads);

}  // namespace strata::core
