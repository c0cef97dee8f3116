"""Regenerates python/mpsnn/_core.pyi from the built extension, or checks it is current.

    python tools/stubs.py          # write the stub
    python tools/stubs.py --check  # exit 1 when the committed stub differs
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUB = ROOT / "python" / "mpsnn" / "_core.pyi"


def generate() -> str:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "pybind11_stubgen", "mpsnn._core", "-o", out, "--ignore-all-errors"],
                       check=True, capture_output=True)
        return (pathlib.Path(out) / "mpsnn" / "_core.pyi").read_text()


def main() -> int:
    text = generate()
    if "--check" in sys.argv:
        if not STUB.exists() or STUB.read_text() != text:
            print(f"{STUB} is out of date: run python tools/stubs.py", file=sys.stderr)
            return 1
        return 0
    STUB.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
