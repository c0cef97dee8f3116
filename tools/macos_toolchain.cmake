# Cross-compiles the whole package for arm64 macOS on Linux with clang-22 / ld64.lld-22 against the
# macOS SDK subset (tools/check_metal.sh explains it; that script repairs a copy of it into
# build/metal-check/macos-sdk, which is the default here). For checking the CMake macOS path
# (Metal on, CPU backend skipped without oneDNN, frameworks, ARC) without a Mac; the Python
# extension it links is built against this machine's Python headers, so it is not a usable wheel.
#
#   cmake -S . -B build/macos -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/macos_toolchain.cmake \
#     -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" && ninja -C build/macos
if(DEFINED ENV{MACOS_SDK_ROOT})
  set(_sdk "$ENV{MACOS_SDK_ROOT}")
else()
  set(_sdk "${CMAKE_CURRENT_LIST_DIR}/../build/metal-check/macos-sdk/sdk")
endif()
set(CMAKE_SYSTEM_NAME Darwin)
set(CMAKE_SYSTEM_PROCESSOR arm64)
set(CMAKE_OSX_ARCHITECTURES arm64)
set(CMAKE_OSX_SYSROOT "${_sdk}")
foreach(_lang C CXX OBJCXX)
  set(CMAKE_${_lang}_COMPILER_TARGET arm64-apple-macos11.0)
endforeach()
set(CMAKE_C_COMPILER /usr/bin/clang-22)
set(CMAKE_CXX_COMPILER /usr/bin/clang++-22)
set(CMAKE_OBJCXX_COMPILER /usr/bin/clang++-22)
# The SDK's libc++ headers, not the host's.
set(CMAKE_CXX_FLAGS_INIT "-nostdinc++ -isystem ${_sdk}/usr/include/c++/v1")
set(CMAKE_OBJCXX_FLAGS_INIT "-nostdinc++ -isystem ${_sdk}/usr/include/c++/v1")
foreach(_kind EXE SHARED MODULE)
  set(CMAKE_${_kind}_LINKER_FLAGS_INIT "-fuse-ld=lld")
endforeach()
set(CMAKE_INSTALL_NAME_TOOL /usr/bin/llvm-install-name-tool-22)
set(CMAKE_AR /usr/bin/llvm-ar-22)
set(CMAKE_RANLIB /usr/bin/llvm-ranlib-22)
set(CMAKE_OTOOL /usr/bin/llvm-otool-22)
set(CMAKE_FIND_ROOT_PATH "${_sdk}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FRAMEWORK_PATH "${_sdk}/System/Library/Frameworks")
set(CMAKE_STRIP /usr/bin/llvm-strip-22)
