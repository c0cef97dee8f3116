"""Regenerates python/mpsnn/_core.pyi from the built extension, or checks it is current.

    python tools/stubs.py          # write the stub and python/mpsnn/_constant_aliases.py
    python tools/stubs.py --check  # exit 1 when a committed file differs

pybind11-stubgen writes what pybind11 knows. Where a binding takes or returns a py::object (a user's
data source, padding policy or handle, NumPy arrays, the graph's sources and results), the stub is
completed from the small tables below: every entry must match (a stale entry is an error), so the
table follows the bindings.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUB = ROOT / "python" / "mpsnn" / "_core.pyi"
ALIASES = ROOT / "python" / "mpsnn" / "_constant_aliases.py"

# Names the completed stub uses (private: not in __all__).
HEADER = '''import os
import numpy
import numpy.typing
import mpsnn._types
import mpsnn.protocols
_Bytes: typing_extensions.TypeAlias = numpy.typing.NDArray[typing.Any] | bytes | bytearray | memoryview
_WritableBytes: typing_extensions.TypeAlias = numpy.typing.NDArray[typing.Any] | bytearray | memoryview
_FloatVector: typing_extensions.TypeAlias = collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] | numpy.typing.NDArray[typing.Any]
_SourceImage: typing_extensions.TypeAlias = MPSImage | numpy.typing.NDArray[typing.Any] | mpsnn.protocols.SupportsDLPack
_Handle: typing_extensions.TypeAlias = mpsnn.protocols.MPSHandle | None
'''

_IMAGES = "collections.abc.Sequence[_SourceImage]"
_STATES = "collections.abc.Sequence[MPSState] | None = None"
_COMPLETION = "collections.abc.Callable[[MPSImage | None, str | None], object]"

# (old, new): plain text replacements over the whole stub; each old text must occur.
REPLACEMENTS: list[tuple[str, str]] = [
    # NumPy arrays are buffers, but numpy's stubs give ndarray __buffer__ only on Python >= 3.12.
    ("def read_bytes(self, data: typing_extensions.Buffer", "def read_bytes(self, data: _WritableBytes"),
    ("def write_bytes(self, data: typing_extensions.Buffer", "def write_bytes(self, data: _Bytes"),
    # std::vector<float> parameters take any sequence of numbers, NumPy arrays included.
    ("collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]", "_FloatVector"),
    ("-> numpy.ndarray:", "-> numpy.typing.NDArray[typing.Any]:"),
    # Classes used before pybind11 registered them (MTLBuffer: image.cpp, after the device).
    ("def make_buffer(self, length: typing.SupportsInt | typing.SupportsIndex) -> ...:",
     "def make_buffer(self, length: typing.SupportsInt | typing.SupportsIndex) -> MTLBuffer:"),
    ("def add_completed_handler(self, handler: collections.abc.Callable)",
     "def add_completed_handler(self, handler: collections.abc.Callable[[MTLCommandBuffer], object])"),
    # MPSNNGraph: sources are MPSImages, NumPy arrays or DLPack tensors; results may be None.
    ("def encode(self, command_buffer: MTLCommandBuffer, source_images: list, source_states: typing.Any = None, "
     "intermediate_images: typing.Any = None, destination_states: typing.Any = None) -> MPSImage:",
     f"def encode(self, command_buffer: MTLCommandBuffer, source_images: {_IMAGES}, source_states: {_STATES}, "
     "intermediate_images: list[MPSImage] | None = None, destination_states: list[MPSState] | None = None) "
     "-> MPSImage | None:"),
    ("def encode_batch(self, command_buffer: MTLCommandBuffer, source_images: collections.abc.Sequence[list], "
     "source_states: typing.Any = None, intermediate_images: typing.Any = None, destination_states: typing.Any = None) "
     "-> typing.Any:",
     f"def encode_batch(self, command_buffer: MTLCommandBuffer, source_images: collections.abc.Sequence[{_IMAGES}], "
     "source_states: collections.abc.Sequence[collections.abc.Sequence[MPSState]] | None = None, "
     "intermediate_images: list[list[MPSImage]] | None = None, "
     "destination_states: list[list[MPSState]] | None = None) -> list[MPSImage] | None:"),
    ("def execute_async(self, source_images: list, completion_handler: collections.abc.Callable) -> MPSImage:",
     f"def execute_async(self, source_images: {_IMAGES}, completion_handler: {_COMPLETION}) -> MPSImage | None:"),
    ("def plan_description(self, source_images: list) -> str:",
     f"def plan_description(self, source_images: {_IMAGES}) -> str:"),
    ("def run(self, source_images: list, intermediate_images: typing.Any = None, source_states: typing.Any = None, "
     "destination_states: typing.Any = None) -> typing.Any:",
     f"def run(self, source_images: {_IMAGES}, intermediate_images: list[MPSImage] | None = None, "
     f"source_states: {_STATES}, destination_states: list[MPSState] | None = None) "
     "-> MPSImage | list[MPSImage | None] | None:"),
    # Serialization and pictures (graph.cpp, serialize.cpp).
    ("def from_bytes(data: typing.Any,", "def from_bytes(data: _Bytes,"),
    ("def _nodes_from_bytes(data: typing.Any) -> typing.Any:", "def _nodes_from_bytes(data: _Bytes) -> typing.Any:"),
    ("def to_dot(self, plan: bool = False, source_images: typing.Any = None, source_states: typing.Any = None) -> str:",
     f"def to_dot(self, plan: bool = False, source_images: {_IMAGES} | None = None, source_states: {_STATES}) -> str:"),
    ("def save_picture(self, path: typing.Any, plan: bool = False, source_images: typing.Any = None, "
     "source_states: typing.Any = None) -> None:",
     f"def save_picture(self, path: str | os.PathLike[str], plan: bool = False, source_images: {_IMAGES} | None = None, "
     f"source_states: {_STATES}) -> None:"),
    ("def intermediate_image_handles(self) -> list:", "def intermediate_image_handles(self) -> list[_Handle]:"),
    ("def result_state_handles(self) -> list:", "def result_state_handles(self) -> list[_Handle]:"),
    ("def source_image_handles(self) -> list:", "def source_image_handles(self) -> list[_Handle]:"),
    ("def source_state_handles(self) -> list:", "def source_state_handles(self) -> list[_Handle]:"),
    ("def result_handle(self) -> typing.Any:", "def result_handle(self) -> _Handle:"),
    ("    def options(self) -> typing.Any:", "    def options(self) -> MPSKernelOptions:"),
    ("destination_image_allocator: typing.Any", "destination_image_allocator: mpsnn.protocols.MPSImageAllocator"),
    ("def MPSImageBatchIncrementReadCount(batch: list,",
     "def MPSImageBatchIncrementReadCount(batch: collections.abc.Sequence[MPSImage],"),
    ("def MPSImageBatchResourceSize(batch: list)",
     "def MPSImageBatchResourceSize(batch: collections.abc.Sequence[MPSImage])"),
    ("def MPSImageBatchSynchronize(batch: list, command_buffer: typing.Any)",
     "def MPSImageBatchSynchronize(batch: collections.abc.Sequence[MPSImage], command_buffer: MTLCommandBuffer)"),
    # The protocol slots (graph.md §9.4) and the small structs of mpsnn._types.
    ("weights: typing.Any", "weights: mpsnn.protocols.MPSCNNConvolutionDataSource"),
    ("padding_policy: typing.Any = None", "padding_policy: mpsnn.protocols.MPSNNPadding | None = None"),
    ("padding_policy: typing.Any", "padding_policy: mpsnn.protocols.MPSNNPadding"),
    ("transform_provider: typing.Any", "transform_provider: mpsnn.protocols.MPSImageTransformProvider"),
    ("image_allocator: typing.Any", "image_allocator: mpsnn.protocols.MPSImageAllocator"),
    ("handle: typing.Any = None", "handle: _Handle = None"),
    ("handle: typing.Any", "handle: _Handle"),
    ("output_size: typing.Any", "output_size: mpsnn._types.MTLSize"),
    ("offset: typing.Any", "offset: mpsnn._types.MPSOffset"),
    ("region: typing.Any = None", "region: mpsnn._types.MTLRegion | None = None"),
    ("feature_channel_info: typing.Any = None",
     "feature_channel_info: mpsnn._types.MPSImageReadWriteParams | None = None"),
]

# (class, old, new): replacements inside one class's body.
CLASS_REPLACEMENTS: list[tuple[str, str, str]] = [
    ("MPSNNImageNode", "def parent(self) -> ...:", "def parent(self) -> MPSNNFilterNode | None:"),
    ("MPSCNNBatchNormalizationNode", "data_source: typing.Any",
     "data_source: mpsnn.protocols.MPSCNNBatchNormalizationDataSource"),
    ("MPSCNNInstanceNormalizationNode", "data_source: typing.Any",
     "data_source: mpsnn.protocols.MPSCNNInstanceNormalizationDataSource"),
]

# `name: T = None` where T does not admit None: pybind11 writes the default, not the Optional.
_IMPLICIT_OPTIONAL = re.compile(r"(\b\w+): ([\w.]+(?:\[[^\]=()]*\])?) = None\b")


# Enumerations are Python enums (py::native_enum): stubgen lists their dunders without types,
# which would hide typeshed's typed ones (IntFlag.__or__ -> Self).
_UNTYPED_DUNDER = re.compile(r"^    (?:@classmethod\n    )?def __\w+__\((?:cls|self)[^)]*\):\n        \.\.\.\n", re.M)


def _complete(text: str) -> str:
    text = _UNTYPED_DUNDER.sub("", text)
    for old, new in REPLACEMENTS:
        if old not in text:
            raise SystemExit(f"tools/stubs.py: stale replacement, not in the generated stub: {old!r}")
        text = text.replace(old, new)
    for cls, old, new in CLASS_REPLACEMENTS:
        m = re.search(rf"^class {cls}\b.*?(?=^class |^def |\Z)", text, flags=re.M | re.S)
        if m is None or old not in m.group(0):
            raise SystemExit(f"tools/stubs.py: stale replacement, not in class {cls}: {old!r}")
        text = text[:m.start()] + m.group(0).replace(old, new) + text[m.end():]
    text = _IMPLICIT_OPTIONAL.sub(
        lambda m: m.group(0) if "None" in m.group(2) or m.group(2) in ("typing.Any", "_Handle")
        else f"{m.group(1)}: {m.group(2)} | None = None", text)
    anchor = "import typing_extensions\n"
    if anchor not in text:
        raise SystemExit("tools/stubs.py: the generated stub no longer imports typing_extensions")
    return text.replace(anchor, anchor + HEADER, 1)


def generate() -> str:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "pybind11_stubgen", "mpsnn._core", "-o", out, "--ignore-all-errors"],
                       check=True, capture_output=True)
        return _complete((pathlib.Path(out) / "mpsnn" / "_core.pyi").read_text())


def generate_aliases() -> str:
    """The Objective-C constant names (MPSNNPaddingMethodSizeSame, ...) as a module: the same names
    and members mpsnn's _export_constant_aliases binds at import (the first member name wins)."""
    import mpsnn  # the importable build, as pybind11-stubgen sees it

    lines = ['"""Objective-C constant names of the enumerations, e.g. MPSNNPaddingMethodSizeSame (generated by',
             'tools/stubs.py from the built module; mpsnn re-exports them)."""', "",
             "from ._core import (  # noqa: F401"]
    enums = list(mpsnn._CONSTANT_ENUMS)
    lines += [f"    {name}," for name in sorted(enums)] + [")", ""]
    names: list[str] = []
    for enum_name in enums:
        for member_name in getattr(mpsnn, enum_name).__members__:
            alias = mpsnn._constant_alias(enum_name, member_name)
            if alias not in names:
                names.append(alias)
                lines.append(f"{alias} = {enum_name}.{member_name}")
    lines += ["", "__all__ = ["] + [f'    "{n}",' for n in names] + ["]", ""]
    return "\n".join(lines)


def main() -> int:
    outputs = {STUB: generate(), ALIASES: generate_aliases()}
    if "--check" in sys.argv:
        stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        for p in stale:
            print(f"{p} is out of date: run python tools/stubs.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs.items():
        p.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
