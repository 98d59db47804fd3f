#include "strata/core/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "strata/core/error.h"

namespace strata::core {

int local_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"}) {
    if (const char* value = std::getenv(name)) {
      const int n = std::atoi(value);
      if (n > 0) return n;
    }
  }
  return 1;
}

int default_threads_per_rank() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / local_world_size());
}

int max_threads() {
  constexpr int kMaxThreads = 1024;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::min(kMaxThreads, 4 * cores);
}

void set_num_threads(int threads) {
  STRATA_CHECK(threads >= 1, "threads per rank: got ", threads, ", expected at least 1");
  at::set_num_threads(threads);
  // OpenBLAS is reached through Debian's libblas.so.3 alternative, so look its setter up
  // at run time instead of linking it: with the reference BLAS there is nothing to pin.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(threads);
  }
  warn_if_blas_is_generic();
}

void warn_if_blas_is_generic() {
  static bool warned = false;
  if (warned) return;
  warned = true;
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
#if defined(__x86_64__)
  if (!core_name || std::string(core_name()) != "Prescott") return;
  if (!__builtin_cpu_supports("avx2")) return;  // then Prescott is OpenBLAS's right choice
  spdlog::warn(
      "OpenBLAS does not know this CPU and runs its slow Prescott kernels (matmul 3-4x slower); "
      "start the program with OPENBLAS_CORETYPE={} (scripts/blas_env.sh does)",
      __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell");
#else
  (void)core_name;  // Prescott is an x86 core type: nothing to check elsewhere
#endif
}

}  // namespace strata::core
