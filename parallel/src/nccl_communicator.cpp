// NCCL backend: written by the communicator work (see parallel/include/strata/parallel/nccl_communicator.h).
#include <nccl.h>
