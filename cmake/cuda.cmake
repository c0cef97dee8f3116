# The CUDA backend (cpp/backends/cuda): cuDNN through the cuDNN frontend's graph API, our own
# CUDA kernels where cuDNN has no operation. Sets MPSNN_HAVE_CUDA and defines mpsnn_cuda.
#
# Nothing CUDA is needed to import or run the package: the CUDA runtime is linked statically
# (it finds the driver, libcuda.so.1, when first used), and cuDNN is opened with dlopen when a
# CUDA device is first used (the frontend's dynamic loading). So a CUDA-enabled build runs on the
# CPU of a machine without GPU, driver or cuDNN.
#
# Headers: the toolkit's (nvcc, cuda_runtime.h), cuDNN's (cudnn.h: CUDNN_INCLUDE_DIR, the system,
# or the nvidia-cudnn-cu13 wheel of the build interpreter) and the cuDNN frontend's
# (cudnn_frontend.h: CUDNN_FRONTEND_INCLUDE_DIR or the nvidia-cudnn-frontend wheel).
# tools/cuda_deps.sh downloads both header sets from PyPI into build/cuda-deps.

set(MPSNN_HAVE_CUDA OFF)
if(MPSNN_CUDA STREQUAL "OFF")
  return()
endif()

function(_mpsnn_cuda_unavailable why)
  if(MPSNN_CUDA STREQUAL "ON")
    message(FATAL_ERROR "mpsnn: MPSNN_CUDA=ON but ${why}")
  endif()
  message(STATUS "mpsnn: CUDA backend skipped: ${why} (MPSNN_CUDA=ON makes this an error)")
endfunction()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _mpsnn_cuda_unavailable("no CUDA compiler (nvcc) was found")
  return()
endif()
find_package(CUDAToolkit QUIET)
if(NOT CUDAToolkit_FOUND)
  _mpsnn_cuda_unavailable("the CUDA toolkit was not found")
  return()
endif()

# Headers shipped in Python wheels: ask the build interpreter where a distribution keeps a file.
function(_mpsnn_wheel_include out distribution header)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
            "import importlib.metadata as m, pathlib; d = m.distribution('${distribution}'); print(next(pathlib.Path(d.locate_file(f)).parent for f in d.files if f.name == '${header}'))"
    OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
  if(_rc EQUAL 0 AND EXISTS "${_dir}/${header}")
    set(${out} "${_dir}" PARENT_SCOPE)
  endif()
endfunction()

set(_deps "${CMAKE_SOURCE_DIR}/build/cuda-deps")
if(NOT CUDNN_INCLUDE_DIR)
  find_path(CUDNN_INCLUDE_DIR cudnn.h
            HINTS "${_deps}/cudnn/include" ${CUDAToolkit_INCLUDE_DIRS} /usr/include/x86_64-linux-gnu)
  if(NOT CUDNN_INCLUDE_DIR)
    _mpsnn_wheel_include(_w nvidia-cudnn-cu13 cudnn.h)
    set(CUDNN_INCLUDE_DIR "${_w}" CACHE PATH "cudnn.h" FORCE)
  endif()
endif()
if(NOT CUDNN_FRONTEND_INCLUDE_DIR)
  find_path(CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h HINTS "${_deps}/cudnn_frontend/include")
  if(NOT CUDNN_FRONTEND_INCLUDE_DIR)
    _mpsnn_wheel_include(_w nvidia-cudnn-frontend cudnn_frontend.h)
    set(CUDNN_FRONTEND_INCLUDE_DIR "${_w}" CACHE PATH "cudnn_frontend.h" FORCE)
  endif()
endif()
if(NOT CUDNN_INCLUDE_DIR OR NOT EXISTS "${CUDNN_INCLUDE_DIR}/cudnn.h")
  _mpsnn_cuda_unavailable("cudnn.h was not found (set CUDNN_INCLUDE_DIR, pip install nvidia-cudnn-cu13, or run tools/cuda_deps.sh)")
  return()
endif()
if(NOT CUDNN_FRONTEND_INCLUDE_DIR OR NOT EXISTS "${CUDNN_FRONTEND_INCLUDE_DIR}/cudnn_frontend.h")
  _mpsnn_cuda_unavailable("cudnn_frontend.h was not found (set CUDNN_FRONTEND_INCLUDE_DIR or run tools/cuda_deps.sh)")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # Hopper (H100/H200) machine code and PTX, which newer GPUs compile when they load it.
  set(CMAKE_CUDA_ARCHITECTURES "90")
endif()
# The frontend's headers include nvrtc.h (it opens NVRTC itself, at run time, when an engine needs it).
find_path(NVRTC_INCLUDE_DIR nvrtc.h HINTS ${CUDAToolkit_INCLUDE_DIRS} "${_deps}/nvrtc/include")
if(NOT NVRTC_INCLUDE_DIR)
  _mpsnn_cuda_unavailable("nvrtc.h was not found (install the toolkit's NVRTC headers or run tools/cuda_deps.sh)")
  return()
endif()

enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
message(STATUS "mpsnn: CUDA backend ON (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, "
               "cudnn.h from ${CUDNN_INCLUDE_DIR}, cudnn_frontend.h from ${CUDNN_FRONTEND_INCLUDE_DIR})")

file(GLOB MPSNN_CUDA_SOURCES CONFIGURE_DEPENDS cpp/backends/cuda/*.cpp cpp/backends/cuda/*.cu
     cpp/backends/cuda/kernels/*.cpp cpp/backends/cuda/kernels/*.cu)
add_library(mpsnn_cuda STATIC ${MPSNN_CUDA_SOURCES})
target_include_directories(mpsnn_cuda SYSTEM PRIVATE "${CUDNN_INCLUDE_DIR}" "${CUDNN_FRONTEND_INCLUDE_DIR}"
                           "${NVRTC_INCLUDE_DIR}")
# cuDNN is opened at run time (backends/cuda/libraries.cpp), never linked.
target_compile_definitions(mpsnn_cuda PRIVATE NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING)
target_compile_options(mpsnn_cuda PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${_mpsnn_warnings}>
                       $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-fPIC>)
set_target_properties(mpsnn_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static POSITION_INDEPENDENT_CODE ON)
target_link_libraries(mpsnn_cuda PUBLIC mpsnn_core CUDA::cudart_static ${CMAKE_DL_LIBS})
set(MPSNN_HAVE_CUDA ON)
