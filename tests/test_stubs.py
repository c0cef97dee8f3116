"""The committed type stub matches the built extension (regenerate with tools/stubs.py)."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("pybind11_stubgen")


def test_stub_is_current():
    tool = pathlib.Path(__file__).resolve().parents[1] / "tools" / "stubs.py"
    result = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stub_is_valid_python():
    """Every signature in the stub is valid Python (no required parameter after a defaulted one):
    what type checkers and IDEs read, and what users see as the call form."""
    import ast
    stub = pathlib.Path(__file__).resolve().parents[1] / "python" / "mpsnn" / "_core.pyi"
    ast.parse(stub.read_text(), filename=str(stub))
