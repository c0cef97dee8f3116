#pragma once
// Run-time choice of the instruction set our own CPU kernels were compiled for.
//
// Why: the loops of our own kernels (kernels/own_*.cpp, the optimizer, the losses, the pooling and
// normalization loops around oneDNN) are vectorized by the compiler, and some use AVX-512
// intrinsics under #ifdef __AVX512F__; how fast they are depends on the -march they were compiled
// with. oneDNN picks its own code at run time, we must do the same for ours, or a portable wheel
// (MPSNN_NATIVE_ARCH=OFF, baseline x86-64) runs them with SSE2 only.
//
// How (the one mechanism, here and in CMakeLists.txt): the sources of those kernels are compiled
// once per instruction set ("ISA": avx512 = x86-64-v4 with VPOPCNTDQ and BITALG, avx2 = x86-64-v3,
// baseline = x86-64; a native
// build has the single ISA "native" = -march=native), each copy with MPSNN_ISA set to the ISA's name,
// which puts everything it defines into the namespace mpsnn::cpu::<ISA> (MPSNN_ISA_NAMESPACE). Each
// copy exports one table (IsaKernels: its kernel factories, its optimizer loop, and the two
// element-wise loops the shared oneDNN code calls); isa.cpp picks one table once, at the first use
// of the CPU backend, with cpuid (__builtin_cpu_supports, which also checks that the OS saves the
// AVX-512 registers), or as MPSNN_CPU_ISA names it. Whole-file compilation (rather than GCC's
// target_clones on single functions) keeps the #ifdef __AVX512F__ intrinsic paths working, covers
// the templates and lambdas the loops are made of, and needs no attribute on each function.
// Because the per-ISA copies share inline functions of headers that are not in the ISA namespace
// (the C++ library, core/), tools/check_isa.py checks the built extension: no function outside an
// ISA namespace may contain an instruction beyond baseline x86-64 (the linker could otherwise
// keep an AVX-512 copy of a shared inline function).
#include <cstdint>

#include "core/tensor_view.h"

#ifdef MPSNN_ISA
#define MPSNN_ISA_NAMESPACE mpsnn::cpu::MPSNN_ISA
#else
#define MPSNN_ISA_NAMESPACE mpsnn::cpu
#endif

namespace mpsnn {
class KernelRegistry;
struct NeuronDescriptor;  // graph/attrs.h
}

namespace mpsnn::cpu {

// What one ISA's copy of the kernel sources provides (kernels/isa_kernels.cpp).
struct IsaKernels {
  const char* name;
  // Adds the factories compiled for this ISA (every CPU kernel but the convolutions and the
  // neuron node, which drive oneDNN only) and its optimizer loop.
  void (*register_kernels)(KernelRegistry& registry);
  // The element loops the shared oneDNN code (dnnl_utils.cpp, compiled once) runs: neurons our
  // own code computes and the NaN-keeping clamp (apply_neuron, apply_tail).
  void (*neuron)(const NeuronDescriptor& n, const TensorView& src, const TensorView& dst);
  void (*clamp)(const TensorView& out, float lo, float hi);
};

// The table chosen for this process (the first call chooses; thread-safe). Throws UnsupportedError when
// MPSNN_CPU_ISA names an ISA that is not compiled in or that this CPU cannot run.
const IsaKernels& isa_kernels();

}  // namespace mpsnn::cpu

#ifdef MPSNN_ISA
namespace MPSNN_ISA_NAMESPACE {
// This copy's table (defined in kernels/isa_kernels.cpp, compiled once per ISA).
const IsaKernels& isa_table();
}  // namespace MPSNN_ISA_NAMESPACE
#endif
