# Installs headers, libkd.so.1 and libkd.a, the CMake package libkd (targets libkd::kd and
# libkd::kd_static) and libkd.pc.

include(CMakePackageConfigHelpers)

set(KD_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/libkd")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.h")
install(TARGETS kd kd_static EXPORT libkdTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" NAMELINK_COMPONENT Development
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT libkdTargets NAMESPACE libkd:: DESTINATION "${KD_CMAKE_INSTALL_DIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/libkdConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/libkdConfig.cmake" INSTALL_DESTINATION "${KD_CMAKE_INSTALL_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/libkdConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/libkdConfig.cmake" "${PROJECT_BINARY_DIR}/libkdConfigVersion.cmake"
        DESTINATION "${KD_CMAKE_INSTALL_DIR}")

# libkd.pc, relocatable: its prefix is found from the .pc file's own location.
set(kd_pc_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
file(RELATIVE_PATH KD_PC_PREFIX_FROM_PCDIR "/root/${kd_pc_dir}" "/root")
string(REGEX REPLACE "/$" "" KD_PC_PREFIX_FROM_PCDIR "${KD_PC_PREFIX_FROM_PCDIR}")
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(KD_PC_BLAS QUIET blas)
endif()
if(KD_PC_BLAS_FOUND)
  set(KD_PC_REQUIRES_PRIVATE "blas")
  set(KD_PC_LIBS_PRIVATE "-pthread -lm")
else()
  set(KD_PC_REQUIRES_PRIVATE "")
  set(KD_PC_LIBS_PRIVATE "")
  foreach(lib IN LISTS KD_CBLAS_LIBRARIES BLAS_LIBRARIES)
    string(APPEND KD_PC_LIBS_PRIVATE "${lib} ")
  endforeach()
  string(APPEND KD_PC_LIBS_PRIVATE "-pthread -lm")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/libkd.pc.in" "${PROJECT_BINARY_DIR}/libkd.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/libkd.pc" DESTINATION "${kd_pc_dir}")
