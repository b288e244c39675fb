# Finds a BLAS that exports the C interface (cblas_sgemm) and its cblas.h.
#
# FindBLAS only checks the Fortran symbol sgemm_; libkd calls the C interface, so this module
# also checks that cblas_sgemm links, adding a separate libcblas when the BLAS lacks it.
# Sets KD_CBLAS_INCLUDE_DIR and KD_CBLAS_LIBRARIES (to link with, after BLAS::BLAS).

include(CheckCSourceCompiles)
include(CMakePushCheckState)

find_package(BLAS REQUIRED)
find_path(KD_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas cblas)
if(NOT KD_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "cblas.h not found: install a CBLAS (Debian: libopenblas-dev or libblas-dev)")
endif()

set(kd_cblas_probe [=[
#include <cblas.h>
int main(void)
{
    float a = 2.0f, b = 3.0f, c = 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
    return c == 6.0f ? 0 : 1;
}
]=])

function(kd_probe_cblas result libraries)
  cmake_push_check_state(RESET)
  set(CMAKE_REQUIRED_INCLUDES "${KD_CBLAS_INCLUDE_DIR}")
  set(CMAKE_REQUIRED_LIBRARIES ${libraries} m)
  set(CMAKE_REQUIRED_QUIET ON)
  check_c_source_compiles("${kd_cblas_probe}" ${result})
  cmake_pop_check_state()
  set(${result} ${${result}} PARENT_SCOPE)
endfunction()

set(KD_CBLAS_LIBRARIES "")
kd_probe_cblas(KD_BLAS_HAS_CBLAS "${BLAS_LIBRARIES}")
if(NOT KD_BLAS_HAS_CBLAS)
  find_library(KD_CBLAS_LIBRARY NAMES cblas)
  if(KD_CBLAS_LIBRARY)
    kd_probe_cblas(KD_LIBCBLAS_HAS_CBLAS "${KD_CBLAS_LIBRARY};${BLAS_LIBRARIES}")
  endif()
  if(NOT KD_LIBCBLAS_HAS_CBLAS)
    message(FATAL_ERROR "The BLAS found (${BLAS_LIBRARIES}) does not export cblas_sgemm, and no "
                        "separate libcblas provides it: install OpenBLAS (Debian: libopenblas-dev)")
  endif()
  set(KD_CBLAS_LIBRARIES "${KD_CBLAS_LIBRARY}")
endif()
message(STATUS "CBLAS: ${KD_CBLAS_LIBRARIES} ${BLAS_LIBRARIES} (cblas.h in ${KD_CBLAS_INCLUDE_DIR})")
