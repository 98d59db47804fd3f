# Sourced by the scripts that run strata: OpenBLAS 0.3.21 (Debian 12) does not know CPUs
# newer than Cooper Lake (Sapphire Rapids, Emerald Rapids: model 143, 207) and falls back
# to its Prescott (SSE3) kernels, which run LibTorch's matmul 3-4x slower (measured here:
# 18-25 against 74-81 GFLOP/s on 384x768x3072, one thread). When it reports Prescott on a
# CPU with AVX-512 (or AVX2), name the newest core type it has for that instruction set.
# OPENBLAS_CORETYPE set by the caller is kept. OpenBLAS reads it when it loads, so it must
# be in the environment before the program starts.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
  blas_core=$(OPENBLAS_VERBOSE=2 /usr/bin/python3 -c 'import ctypes; ctypes.CDLL("libopenblas.so.0")' 2>&1 || true)
  if [[ $blas_core == *"Core: Prescott"* ]]; then
    if grep -qw avx512f /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=Haswell
    fi
  fi
fi
