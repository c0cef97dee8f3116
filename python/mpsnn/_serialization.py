"""What pickles of graphs and nodes call when they are loaded (Python functions, so that pickle can
name them; the work is MPSNNGraph.from_bytes and the node loader of cpp/graph/serialize.cpp)."""

from __future__ import annotations

from typing import Any

from . import _core


def load_graph(data: bytes) -> _core.MPSNNGraph:
    """An MPSNNGraph from MPSNNGraph.to_bytes() data, on the system default device."""
    return _core.MPSNNGraph.from_bytes(data)


def load_nodes(data: bytes) -> Any:
    """The node (and everything upstream of it) a node's pickle holds."""
    return _core._nodes_from_bytes(data)
