# Every package the build needs, each found quietly; whatever is missing is reported once, by its Debian
# package name, instead of a CMake trace (scripts/setup.sh installs them all).
#
# oneDNN is found by its header and library, not by Debian's dnnl-config.cmake: that file calls
# find_package(OpenCL) because the library was built with an OpenCL GPU runtime, which would make OpenCL's
# headers (ocl-icd-opencl-dev) a build dependency although fluxcpp never uses a GPU. libdnnl2 itself depends on
# the OpenCL loader library, so linking works without the headers.

set(FLUX_MISSING "")
macro(flux_need found debian_package)
  if(NOT ${found})
    list(APPEND FLUX_MISSING ${debian_package})
  endif()
endmacro()

find_package(Threads QUIET)
flux_need(Threads_FOUND libc6-dev)
find_package(OpenMP QUIET)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  flux_need(OpenMP_FOUND libomp-14-dev)
else()
  flux_need(OpenMP_FOUND libgomp1)
endif()

find_path(FLUX_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(FLUX_DNNL_LIBRARY dnnl)
if(FLUX_DNNL_INCLUDE_DIR AND FLUX_DNNL_LIBRARY)
  add_library(DNNL::dnnl UNKNOWN IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${FLUX_DNNL_LIBRARY}"
                                              INTERFACE_INCLUDE_DIRECTORIES "${FLUX_DNNL_INCLUDE_DIR}")
else()
  list(APPEND FLUX_MISSING libdnnl-dev)
endif()

find_package(nlohmann_json QUIET)
flux_need(nlohmann_json_FOUND nlohmann-json3-dev)
find_package(CLI11 QUIET)
flux_need(CLI11_FOUND libcli11-dev)
find_package(Boost 1.74 QUIET)
flux_need(Boost_FOUND libboost-dev)
find_package(ICU QUIET COMPONENTS uc)
flux_need(ICU_FOUND libicu-dev)
find_package(PNG QUIET)
flux_need(PNG_FOUND libpng-dev)
find_package(JPEG QUIET)
flux_need(JPEG_FOUND libjpeg-dev)
find_package(PkgConfig QUIET)
flux_need(PkgConfig_FOUND pkg-config)
if(PkgConfig_FOUND)
  pkg_check_modules(SENTENCEPIECE QUIET IMPORTED_TARGET sentencepiece)
  flux_need(SENTENCEPIECE_FOUND libsentencepiece-dev)
  pkg_check_modules(CURL QUIET IMPORTED_TARGET libcurl)
  flux_need(CURL_FOUND libcurl4-openssl-dev)
endif()
if(FLUX_TESTS)
  find_package(GTest QUIET)
  flux_need(GTest_FOUND libgtest-dev)
endif()

if(FLUX_MISSING)
  list(JOIN FLUX_MISSING " " missing)
  message(FATAL_ERROR "fluxcpp: missing Debian packages: ${missing}\n"
                      "Install them with: apt-get install ${missing}   (or run scripts/setup.sh)")
endif()
