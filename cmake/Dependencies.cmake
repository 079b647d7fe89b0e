# Every dependency comes from Debian on the reference machine; a missing one names its package.

function(libsd_require found pkg what)
  if(NOT ${found})
    message(FATAL_ERROR "libsd: ${what} not found. On Debian/Ubuntu: sudo apt-get install ${pkg}")
  endif()
endfunction()

# A CUDA LibTorch's CMake package needs nvcc and the CUDA headers (it enables the CUDA language):
# take the toolkit at /usr/local/cuda when nothing else was named.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler (for a CUDA LibTorch)")
endif()
find_package(Torch QUIET)
libsd_require(Torch_FOUND "libtorch-dev libopenblas0-openmp"
  "LibTorch (or pass -DCMAKE_PREFIX_PATH=/path/to/libtorch for another build, e.g. a CUDA one)")
# TorchConfig puts its ABI flag in TORCH_CXX_FLAGS; keep it per target, not global.
separate_arguments(LIBSD_TORCH_CXX_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")

# A LibTorch outside the system folders: installed programs and libsd.so keep its lib/ in their run
# path (CMAKE_INSTALL_RPATH_USE_LINK_PATH alone drops it where it also holds a libgomp).
if(TORCH_INSTALL_PREFIX AND NOT TORCH_INSTALL_PREFIX MATCHES "^/usr/?$")
  list(APPEND CMAKE_INSTALL_RPATH "${TORCH_INSTALL_PREFIX}/lib")
endif()

# Does this LibTorch have CUDA? CUDA-only sources compile only then.
set(LIBSD_WITH_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(LIBSD_WITH_CUDA ON)
endif()
message(STATUS "libsd: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}, CUDA: ${LIBSD_WITH_CUDA}")

find_package(nlohmann_json 3 QUIET)
libsd_require(nlohmann_json_FOUND nlohmann-json3-dev "nlohmann_json")

find_path(STB_INCLUDE_DIR NAMES stb_image_write.h PATH_SUFFIXES stb)
libsd_require(STB_INCLUDE_DIR libstb-dev "stb_image_write.h")

find_package(Threads REQUIRED)
# Not under ThreadSanitizer: libgomp is not instrumented, so TSan cannot see its barriers and would
# report every at::parallel_for in libsd as a race (tests/sanitizers/README.md).
if(NOT LIBSD_SANITIZE_THREAD)
  find_package(OpenMP QUIET)
endif()

if(LIBSD_BUILD_TOOLS OR LIBSD_BUILD_BENCH)
  find_package(CLI11 QUIET)
  libsd_require(CLI11_FOUND libcli11-dev "CLI11")
endif()

if(LIBSD_BUILD_TESTS)
  find_package(Catch2 QUIET)
  libsd_require(Catch2_FOUND catch2 "Catch2")
endif()

# OpenBLAS with OpenMP is what makes Debian's LibTorch fast; warn (not fail) at configure time,
# the library checks again at run time.
file(GLOB LIBSD_OPENBLAS_OPENMP "/usr/lib/*/openblas-openmp/libopenblas.so.0")
if(NOT LIBSD_OPENBLAS_OPENMP AND TORCH_INSTALL_PREFIX STREQUAL "/usr")
  message(WARNING "libsd: libopenblas0-openmp is not installed: matrix products will be ~50x slower. "
                  "sudo apt-get install libopenblas0-openmp")
endif()
