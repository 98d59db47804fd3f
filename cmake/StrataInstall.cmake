include(CMakePackageConfigHelpers)
install(EXPORT strataTargets NAMESPACE strata:: DESTINATION lib/cmake/strata)
configure_package_config_file(cmake/strataConfig.cmake.in
  "${CMAKE_BINARY_DIR}/strataConfig.cmake" INSTALL_DESTINATION lib/cmake/strata)
write_basic_package_version_file("${CMAKE_BINARY_DIR}/strataConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_BINARY_DIR}/strataConfig.cmake" "${CMAKE_BINARY_DIR}/strataConfigVersion.cmake"
  cmake/FindNCCL.cmake DESTINATION lib/cmake/strata)
