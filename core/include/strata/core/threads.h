#pragma once
// Thread pools a rank uses: LibTorch's intra-op pool and the BLAS library's own pool.
// OpenBLAS starts one thread per core in every process unless told otherwise, so two
// ranks on two cores would each run two BLAS threads and fight over the cores.

namespace strata::core {

// Number of ranks of this job on this host (mpirun's OMPI_COMM_WORLD_LOCAL_SIZE, else 1).
int local_world_size();

// Cores of this host divided by the ranks on it, at least 1.
int default_threads_per_rank();

// The most threads a rank may ask for: 4 x this host's hardware threads, at most 1024. More
// only oversubscribes the cores (and 100000 OpenMP threads never finish starting).
int max_threads();

// Pins LibTorch's intra-op pool and the BLAS pool (OpenBLAS, when loaded) to `threads`,
// and warns once if OpenBLAS fell back to its generic kernels (warn_if_blas_is_generic).
void set_num_threads(int threads);

// OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than Cooper Lake and then runs its
// Prescott (SSE3) kernels; on a CPU with AVX2 or AVX-512 this logs a warning that names
// the OPENBLAS_CORETYPE to start the program with. Silent otherwise; once per process.
void warn_if_blas_is_generic();

}  // namespace strata::core
