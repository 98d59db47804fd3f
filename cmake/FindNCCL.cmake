# Finds NCCL and the CUDA runtime headers it needs.
# Defines NCCL_FOUND, NCCL_INCLUDE_DIRS, NCCL_LIBRARIES, CUDART_INCLUDE_DIR.
set(_nccl_hints $ENV{NCCL_ROOT} $ENV{CUDA_HOME} /usr/local/cuda /usr)
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
find_path(CUDART_INCLUDE_DIR cuda_runtime.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
find_library(NCCL_LIBRARY nccl HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
find_library(CUDART_LIBRARY cudart HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NCCL DEFAULT_MSG NCCL_INCLUDE_DIR NCCL_LIBRARY CUDART_INCLUDE_DIR CUDART_LIBRARY)
set(NCCL_INCLUDE_DIRS ${NCCL_INCLUDE_DIR} ${CUDART_INCLUDE_DIR})
set(NCCL_LIBRARIES ${NCCL_LIBRARY} ${CUDART_LIBRARY})
mark_as_advanced(NCCL_INCLUDE_DIR CUDART_INCLUDE_DIR NCCL_LIBRARY CUDART_LIBRARY)
