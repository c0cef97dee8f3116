"""mpsnn: Apple's Metal Performance Shaders neural-network graph (MPSNNGraph and its nodes) for
Python, on a native C++ core with a oneDNN CPU backend.

Class names are Apple's; members are snake_case and Swift argument labels become keywords.
"""

from __future__ import annotations


def _load_core():
    try:
        from . import _core
    except ImportError as first:
        # Editable builds load the module from the build tree, where the rpath to the
        # environment's lib/ does not apply: load libdnnl.so.3 from onednn-cpu-gomp first.
        import ctypes
        import importlib.metadata as md
        import pathlib

        try:
            dist = md.distribution("onednn-cpu-gomp")
            lib = next(pathlib.Path(dist.locate_file(f)) for f in (dist.files or []) if f.name == "libdnnl.so.3")
        except (md.PackageNotFoundError, StopIteration):
            raise first from None
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        from . import _core
    return _core


_core = _load_core()

import atexit as _atexit  # noqa: E402

from ._core import *  # noqa: E402,F401,F403
from ._core import (  # noqa: E402
    MPSCNNBatchNormalizationFlags,
    MPSCNNNeuronType,
    MPSDataLayout,
    MPSImageEdgeMode,
    MPSImageFeatureChannelFormat,
    MPSKernelOptions,
    MPSNNPaddingMethod,
    MPSNNTrainingStyle,
)
from ._types import MPSImageReadWriteParams, MPSOffset, MTLOrigin, MTLRegion, MTLSize  # noqa: E402
from .data_sources import (  # noqa: E402
    ArrayBatchNormalizationDataSource,
    ArrayConvolutionDataSource,
    ArrayInstanceNormalizationDataSource,
)
from .protocols import (  # noqa: E402
    MPSCNNBatchNormalizationDataSource,
    MPSCNNConvolutionDataSource,
    MPSCNNInstanceNormalizationDataSource,
    MPSHandle,
    MPSImageAllocator,
    MPSImageTransformProvider,
    MPSNNPadding,
    MPSNNTrainableNode,
)

# Work committed to command queues finishes before the interpreter goes away.
_atexit.register(_core._drain_all_queues)


def _export_constant_aliases(ns):
    """Objective-C constant names as module aliases, e.g. MPSNNPaddingMethodSizeSame."""
    for enum_name in ("MPSNNPaddingMethod", "MPSImageFeatureChannelFormat", "MPSImageEdgeMode", "MPSCNNNeuronType",
                      "MPSDataLayout", "MPSNNTrainingStyle", "MPSCNNBatchNormalizationFlags", "MPSKernelOptions"):
        enum = ns[enum_name]
        for member_name, member in enum.__members__.items():
            camel = "".join(part[:1].upper() + part[1:] for part in member_name.split("_"))
            ns.setdefault(enum_name + camel, member)


_export_constant_aliases(globals())
MPSRectNoClip = MTLRegion(MTLOrigin(0, 0, 0), MTLSize(-1, -1, -1))

__all__ = sorted(name for name in globals() if name.startswith(("MPS", "MTL", "Array")) or name in (
    "ShapeError", "DTypeError", "UnsupportedError", "BackendError", "available_backends"))
__version__ = "0.1.0"


# MPSStateBatch helpers (graph.md §5.1): a batch may hold one state several times (a state that
# accumulates over the batch); read counts and sizes count each object once.
def _unique_states(batch):
    seen, out = set(), []
    for s in batch:
        if id(s) not in seen:
            seen.add(id(s))
            out.append(s)
    return out


def MPSStateBatchIncrementReadCount(batch, amount):
    """Adds `amount` to the read count of every distinct state of `batch`; returns the new total."""
    for s in _unique_states(batch):
        s.read_count = s.read_count + amount
    return sum(s.read_count for s in _unique_states(batch))


def MPSStateBatchResourceSize(batch):
    """Bytes of memory the distinct states of `batch` hold."""
    return sum(s.resource_size() for s in _unique_states(batch))


def MPSStateBatchSynchronize(batch, command_buffer):
    """Makes the states' memory visible to the CPU after `command_buffer` (host memory: nothing to do)."""
    del batch, command_buffer


__all__ += ["MPSStateBatchIncrementReadCount", "MPSStateBatchResourceSize", "MPSStateBatchSynchronize"]
