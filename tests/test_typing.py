"""The typed stubs serve typed user code: `mypy --strict` passes on examples/ and tests/typing_usage.py
(the configuration of pyproject.toml's [tool.mypy]), and rejects the common mistakes."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

import mpsnn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Runs mypy --strict with pyproject.toml's configuration on the importable mpsnn, with a fresh
    cache (a stale .mypy_cache could hide a stub change); returns (exit status, output)."""
    cache = tmp_path_factory.mktemp("mypy_cache")
    env = dict(os.environ)
    # The mpsnn under test, found the way users' mypy finds it: an installed wheel from site-packages,
    # a source tree from PYTHONPATH.
    package_root = pathlib.Path(mpsnn.__file__).resolve().parents[1]
    if package_root.name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH")) if p)

    def run(*paths):
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(cache), "--no-color-output", *map(str, paths)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout + result.stderr

    return run


def test_examples_and_typed_usage_pass_mypy_strict(mypy):
    files = [*sorted((ROOT / "examples").glob("*.py")), ROOT / "tests" / "typing_usage.py"]
    assert len(files) >= 7, files  # the examples are there to be checked
    status, output = mypy(*files)
    assert status == 0, output
    assert f"Success: no issues found in {len(files)} source files" in output, output


def test_typed_usage_runs():
    """The typed file is real code: it runs (and checks its own results)."""
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "typing_usage.py")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "typing_usage: ok" in result.stdout


MISTAKES = {
    # graph.run takes a list of sources, not one array.
    "run_without_list": ("graph.run(np.zeros((1, 4, 4, 3), np.float32))", 'incompatible type "ndarray'),
    # The result may be a list (several results) or None: narrow it before numpy().
    "result_not_narrowed": ("graph.run([image]).numpy()", 'Item "None" of'),
    # A data-source slot takes an MPSCNNConvolutionDataSource.
    "weights_not_a_data_source": ("MPSCNNConvolutionNode(source=x, weights=np.zeros(3))",
                                  '"MPSCNNConvolutionDataSource"'),
    # A padding slot takes an MPSNNPadding.
    "padding_not_a_policy": ("node.padding_policy = 3", '"MPSNNPadding"'),
    # Typed returns: a command queue makes MTLCommandBuffers.
    "command_buffer_type": ("s: str = device.make_command_queue().make_command_buffer()", '"MTLCommandBuffer"'),
    # The Objective-C alias constants are declared (and misspellings are caught).
    "alias_misspelled": ("mpsnn.MPSNNPaddingMethodSizeSamee", 'has no attribute "MPSNNPaddingMethodSizeSamee"'),
}


def test_mypy_rejects_common_mistakes(mypy, tmp_path):
    """The stubs are not Any in disguise: each mistake is an error, on its own line."""
    lines = {}
    body = []
    for name, (code, _) in MISTAKES.items():
        lines[name] = len(body) + 16
        body.append(f"    {code}  # {name}")
    source = textwrap.dedent("""\
        import numpy as np

        import mpsnn
        from mpsnn import (ArrayConvolutionDataSource, MPSCNNConvolutionDescriptor, MPSCNNConvolutionNode, MPSImage,
                           MPSNNGraph, MPSNNImageNode, MTLCreateSystemDefaultDevice)


        def mistakes() -> None:
            device = MTLCreateSystemDefaultDevice()
            x = MPSNNImageNode(handle=None)
            desc = MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=3,
                                               output_feature_channels=3)
            node = MPSCNNConvolutionNode(source=x, weights=ArrayConvolutionDataSource(desc, np.ones(9, np.float32)))
            graph = MPSNNGraph(device, result_image=node.result_image)
            image = MPSImage.from_numpy(np.zeros((1, 4, 4, 3), np.float32))
        """) + "\n".join(body) + "\n"
    path = tmp_path / "mistakes.py"
    path.write_text(source)
    status, output = mypy(path)
    assert status == 1, output
    for name, (_, message) in MISTAKES.items():
        found = [ln for ln in output.splitlines() if f"mistakes.py:{lines[name]}:" in ln]
        assert any(message in ln for ln in found), f"{name}: expected {message!r} on line {lines[name]}:\n{output}"


def test_demo_says_its_weights_are_random_and_explains_the_plan():
    """The README's first command (examples/mnist_inference.py; here for its annotations' sake): one
    printed line says the weights are random and what the plan printout that follows is."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist_inference.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    explained = [i for i, ln in enumerate(lines) if "weights are random" in ln and "plan" in ln]
    assert len(explained) == 1, result.stdout
    assert lines[explained[0] + 1].startswith("MPSNNGraph on device"), result.stdout  # the plan follows
    assert "arg-max of the batch:" in result.stdout
