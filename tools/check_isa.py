#!/usr/bin/env python3
"""Checks a portable build of the extension (MPSNN_NATIVE_ARCH=OFF): no code compiled for AVX2 or
AVX-512 can be reached from code that runs on any x86-64 CPU (cpp/backends/cpu/isa.h).

The per-ISA copies of our kernels are compiled from the same sources with different -march flags.
Their own functions live in mpsnn::cpu::<ISA> (or are local to their object), but the inline
functions they share with the rest of the extension (the C++ library's templates, core/ headers)
are emitted, one section each (a COMDAT group), by every object that calls them out of line, and the
linker keeps one copy. If it kept an AVX2 object's copy that uses AVX2 instructions, a CPU without
AVX2 calling it from baseline code would die of an illegal instruction. CMakeLists.txt links the
ISA objects from the plainest up so that this should not happen; this script verifies it.

It reads the linker map of _core (written into the build folder by portable builds), takes every
section the link kept from an AVX2 or AVX-512 object whose function is not in that ISA's namespace,
disassembles it from that object, and fails if it has an instruction beyond baseline x86-64.

    python tools/check_isa.py build/portable        (the CMake build folder)
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import subprocess
import sys

OBJECT = re.compile(r"mpsnn_cpu_(\w+)\.dir/")
ENTRY = re.compile(r"^ (\.text\S*)(?:\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+))?\s*$")
CONT = re.compile(r"^\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+)\s*$")
# BMI1/BMI2/MOVBE (x86-64-v3) general-purpose instructions; lzcnt/tzcnt are left out: their
# encodings are `rep bsr` / `rep bsf` on older CPUs, which GCC emits for baseline code too.
V3_GPR = {"andn", "bextr", "blsi", "blsmsk", "blsr", "bzhi", "mulx", "pdep", "pext", "rorx", "sarx", "shlx", "shrx",
          "movbe"}
EVEX = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\{1to")
LEVELS = {0: "baseline", 1: "AVX/AVX2/FMA/BMI", 2: "AVX-512"}


def level(mnemonic: str, operands: str) -> int:
    """0: baseline x86-64 (SSE2), 1: AVX/AVX2/FMA/BMI (x86-64-v3), 2: AVX-512."""
    if EVEX.search(operands) or re.match(r"k(mov|and|or|xor|not|shift|test|add|unpck)", mnemonic):
        return 2
    if (mnemonic.startswith("v") and mnemonic not in ("verr", "verw")) or mnemonic in V3_GPR:
        return 1
    return 0


def kept_sections(map_text: str):
    """(section, size, object) of every input code section the link kept (size > 0)."""
    body = map_text.split("Linker script and memory map", 1)[-1]
    pending = None
    for line in body.splitlines():
        m = ENTRY.match(line)
        if m:
            if m.group(2):
                yield m.group(1), int(m.group(3), 16), m.group(4)
                pending = None
            else:
                pending = m.group(1)
            continue
        if pending:
            c = CONT.match(line)
            if c:
                yield pending, int(c.group(2), 16), c.group(3)
            pending = None


def max_level(obj: pathlib.Path, section: str) -> int:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-j", section, str(obj)], check=True,
                         capture_output=True, text=True).stdout
    top = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().endswith(":"):
            insn = parts[1].strip().split(None, 1)
            if insn:
                top = max(top, level(insn[0], insn[1] if len(insn) > 1 else ""))
    return top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=pathlib.Path, help="the CMake build folder of a portable build")
    args = parser.parse_args()
    map_path = args.build_dir / "_core.map"
    if not map_path.exists():
        print(f"{map_path} not found: is this a portable build (MPSNN_NATIVE_ARCH=OFF) of x86-64?", file=sys.stderr)
        return 1
    sizes = collections.Counter()
    shared = []  # (isa, section, object): inline functions of shared headers kept from an ISA object
    for section, size, obj in kept_sections(map_path.read_text()):
        m = OBJECT.search(obj)
        if not m or size == 0:
            continue
        isa = m.group(1)
        sizes[isa] += size
        mangled = re.sub(r"^\.text(\.(unlikely|startup|hot|exit))?\.", "", section)
        if isa != "baseline" and mangled.startswith("_Z"):
            shared.append((isa, section, mangled, obj))
    names = subprocess.run(["c++filt"], input="\n".join(s[2] for s in shared), capture_output=True, text=True,
                           check=True).stdout.splitlines() if shared else []
    violations, checked = [], 0
    for (isa, section, _, obj), name in zip(shared, names):
        if f"mpsnn::cpu::{isa}::" in name:
            continue  # one of the ISA's own functions (or a template of its types): only its code calls it
        checked += 1
        lv = max_level(args.build_dir / obj, section)
        if lv:
            violations.append((lv, isa, name))
    print(f"{map_path}: code kept from the per-ISA objects: "
          + ", ".join(f"{isa} {n / 1024:.0f} KiB" for isa, n in sorted(sizes.items())))
    print(f"  {checked} shared inline functions kept from AVX2 / AVX-512 objects, disassembled")
    if not sizes:
        print("no per-ISA objects in the link", file=sys.stderr)
        return 1
    if violations:
        print(f"{len(violations)} of them use instructions beyond baseline x86-64:", file=sys.stderr)
        for lv, isa, name in violations[:40]:
            print(f"  {LEVELS[lv]:16s} from {isa}: {name}", file=sys.stderr)
        return 1
    print("ok: baseline code cannot reach an AVX2 or AVX-512 instruction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
