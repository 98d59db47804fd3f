# strata_avx512_sources(<file>... [VNNI]): compiles these files (of the calling directory)
# for AVX-512 F/BW/VL/DQ and FMA, with VNNI too when asked. Only such a file may hold
# AVX-512 code, and it may only run after core::cpu_capability() said so (avx512, and
# avx512_vnni for VNNI), so the libraries still run on any x86-64; VNNI is opt-in because
# the compiler may use any instruction it is allowed anywhere in the file. The files must
# not include torch headers: they skip the shared precompiled header, which is compiled
# without these flags. GCC 12 at -O3 warns of "uninitialized __Y" inside its own AVX-512
# intrinsic headers (a known false positive), hence the two -Wno for GCC.
# Included by StrataHelpers.cmake and by the fuzz build (tests/fuzz), which compiles some
# of these files again with clang.
function(strata_avx512_sources)
  cmake_parse_arguments(ARG "VNNI" "" "" ${ARGN})
  set(options -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma)
  if(ARG_VNNI)
    list(APPEND options -mavx512vnni)
  endif()
  list(APPEND options $<$<CXX_COMPILER_ID:GNU>:-Wno-uninitialized>
       $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
  set_source_files_properties(${ARG_UNPARSED_ARGUMENTS} PROPERTIES
    COMPILE_OPTIONS "${options}" SKIP_PRECOMPILE_HEADERS ON)
endfunction()
