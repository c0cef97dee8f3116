#pragma once
// The NVIDIA libraries the CUDA backend opens at run time, never at import: cuDNN 9
// (libcudnn.so.9, for the cuDNN frontend's dynamic loading) and the shared CUDA runtime the
// frontend itself calls (libcudart.so.13). Each is looked for, in order, where the user points
// (MPSNN_CUDNN_LIBRARY, CUDNN_FRONTEND_CUDART_LIB_NAME), in the NVIDIA wheels installed next to
// this package (site-packages/nvidia/...: nvidia-cudnn-cu13, nvidia-cuda-runtime), then by the
// dynamic loader's own search (system installs, LD_LIBRARY_PATH) -- as PyTorch's wheels do.
#include <string>
#include <vector>

namespace mpsnn::cuda {

// Folders that may hold NVIDIA wheels' libraries: each `dir` is a site-packages/nvidia folder
// (mpsnn/__init__.py passes those on sys.path, so a venv that sees another environment's
// packages finds them too). Searched after MPSNN_CUDNN_LIBRARY, before the loader's own search.
void set_library_dirs(std::vector<std::string> dirs);

// Opens cuDNN once (thread-safe) and hands it to the frontend; throws UnsupportedError naming
// every place tried when it cannot be found or is older than 9.
void ensure_cudnn();
// "cuDNN 9.19.1 (/path/libcudnn.so.9)", after ensure_cudnn().
std::string cudnn_description();

}  // namespace mpsnn::cuda
