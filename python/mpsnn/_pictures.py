"""Rendering of DOT text (MPSNNGraph.to_dot) with Graphviz's `dot` program (MPSNNGraph.save_picture)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Union

from . import _core

_FORMATS = {".svg": "svg", ".png": "png"}


def render_dot(dot: str, path: Union[str, "os.PathLike[str]"]) -> None:
    """Writes `dot` as the picture `path` names (.svg or .png) with Graphviz's `dot`."""
    target = os.fspath(path)
    ext = os.path.splitext(target)[1].lower()
    if ext not in _FORMATS:
        raise _core.UnsupportedError(f"[MPSNNGraph.save_picture] {target!r} has the extension {ext or '(none)'!r}; "
                                     "expected .svg or .png (to_dot() gives the DOT text itself)")
    exe = shutil.which("dot")
    if exe is None:
        raise _core.UnsupportedError("[MPSNNGraph.save_picture] Graphviz's `dot` program is not on PATH; install "
                                     "Graphviz (e.g. `apt-get install graphviz`, `brew install graphviz`, `conda "
                                     "install graphviz`) or render graph.to_dot() yourself")
    done = subprocess.run([exe, "-T" + _FORMATS[ext], "-o", target], input=dot.encode("utf-8"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise _core.BackendError(f"[MPSNNGraph.save_picture] {exe} failed with status {done.returncode}: "
                                 f"{done.stderr.decode('utf-8', 'replace').strip()}")
