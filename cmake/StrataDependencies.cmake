# Every third-party package strata uses, found once for the whole tree.
# strataConfig.cmake.in repeats the public ones for projects that use an installed strata.
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
# LibTorch's at::parallel_for is an inline OpenMP region (AT_PARALLEL_OPENMP in
# ATen/Config.h): code of ours that calls it runs on one thread unless compiled with
# -fopenmp, against the same libgomp LibTorch uses.
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(MPI REQUIRED COMPONENTS C)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET GLOBAL libxxhash)

# NCCL: built only when LibTorch itself was built with CUDA and NCCL is found.
find_package(NCCL)
set(STRATA_WITH_NCCL OFF)
if(TORCH_CUDA_LIBRARIES AND NCCL_FOUND)
  set(STRATA_WITH_NCCL ON)
endif()
message(STATUS "strata: NCCL backend ${STRATA_WITH_NCCL}")
