include("${CMAKE_CURRENT_LIST_DIR}/StrataAvx512.cmake")

# One precompiled header of the torch front end, shared by every strata target.
# LibTorch's headers cost ~14 s per translation unit; with the PCH a file costs ~2 s.
file(WRITE "${CMAKE_BINARY_DIR}/strata_pch.cpp" "// translation unit that owns the precompiled header\n")
add_library(strata_pch OBJECT "${CMAKE_BINARY_DIR}/strata_pch.cpp")
target_link_libraries(strata_pch PUBLIC ${TORCH_LIBRARIES} OpenMP::OpenMP_CXX)
target_precompile_headers(strata_pch PUBLIC <torch/torch.h> <vector> <string> <memory>)
set(STRATA_WARNINGS -Wall -Wextra -Wno-unused-parameter)

# Warnings, OpenMP (so that at::parallel_for runs in parallel; see StrataDependencies.cmake)
# and the shared PCH for a target of ours.
function(strata_target_defaults target)
  target_compile_options(${target} PRIVATE ${STRATA_WARNINGS})
  target_link_libraries(${target} PUBLIC OpenMP::OpenMP_CXX)
  target_precompile_headers(${target} REUSE_FROM strata_pch)
endfunction()

# strata_add_module(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# builds strata_<name> (alias strata::<name>) from <module>/src with headers in <module>/include.
function(strata_add_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target strata_${name})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(strata::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${CMAKE_CURRENT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  strata_target_defaults(${target})
  install(TARGETS ${target} EXPORT strataTargets ARCHIVE DESTINATION lib)
  install(DIRECTORY include/ DESTINATION include)
  set_property(GLOBAL APPEND PROPERTY STRATA_MODULES ${name})
  # Command-line parsing belongs to the programs, as Megatron keeps arguments.py out of
  # megatron/core: a library binds nothing to flags, the programs bind flags to its Options.
  # CLI11 sits in the system include path, so linking alone cannot keep it out.
  if(NOT name STREQUAL "programs")
    file(GLOB_RECURSE sources "${CMAKE_CURRENT_SOURCE_DIR}/include/*.h"
         "${CMAKE_CURRENT_SOURCE_DIR}/src/*.h" "${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp")
    foreach(source ${sources})
      file(STRINGS "${source}" cli_includes REGEX "#[ \t]*include[ \t]*[<\"]CLI/")
      if(cli_includes)
        message(FATAL_ERROR "${source} includes CLI11; strata::${name} is a library, and "
                            "flags belong to programs/ (strata::programs), which binds them "
                            "to the library's Options")
      endif()
    endforeach()
  endif()
endfunction()

# strata_add_program(<name> SOURCES ... DEPS ...): an example, tool or benchmark.
function(strata_add_program name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} strata::programs)
  strata_target_defaults(${name})
endfunction()
