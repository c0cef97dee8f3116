"""examples/ray_serve.py and examples/ray_batch_inference.py on a local Ray (loopback, 2 CPUs):
every answer of the Serve replicas and every row of the Ray Data pipeline against a graph run in
this process. Slow (Ray's start-up and the actors' take about a minute): run with MPSNN_SLOW=1 and
`pip install "ray[serve,data]"` (the `ray` extra)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import socket

import numpy as np
import pytest

from conftest import assert_close

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MPSNN_SLOW") != "1", reason="starts Ray: set MPSNN_SLOW=1"),
    # Ray's own deprecation and resource warnings are not ours to fail on (pyproject: warnings are errors).
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning",
                               "ignore::ResourceWarning", "ignore::FutureWarning", "ignore::UserWarning"),
]


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray", reason='needs Ray: pip install "ray[serve,data]"')
    pytest.importorskip("ray.serve")
    import ray

    serve_example = load("ray_serve")
    saved = os.environ.get("PYTHONPATH")
    serve_example.start_local_ray(num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_replicas_batch_and_match_a_local_run(local_ray):
    from ray import serve

    example = load("ray_serve")
    requests = 48
    try:
        seen = example.serve_and_check(replicas=2, requests=requests, http_port=free_loopback_port())
    finally:
        serve.shutdown()
    served, expected = seen["served"], seen["expected"]
    assert served.shape == expected.shape == (requests, 10)
    # Every answer against the same image's row of one local batch run (the replicas' batches are
    # made differently: float rounding only).
    for i in range(requests):
        assert_close(served[i], expected[i], "reduction", k=7 * 7 * 64)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)
    assert max(seen["batch_sizes"]) > 1, seen["batch_sizes"]  # @serve.batch gathered requests
    assert max(seen["batch_sizes"]) <= 16
    assert len(seen["replicas"]) == 2, seen["replicas"]  # both replicas answered
    assert seen["http_digit"] == int(seen["expected_digits"][0])


def test_ray_data_pool_maps_every_image(local_ray):
    example = load("ray_batch_inference")
    count = 200
    result = example.classify(example.dataset(count), actors=2, batch_size=32)
    np.testing.assert_array_equal(result["id"], np.arange(count))  # every image once
    expected = np.asarray(example.build_graph().run([example.digits(count)]), np.float32).reshape(count, 10)
    for i in range(count):
        assert_close(result["probabilities"][i], expected[i], "reduction", k=7 * 7 * 64)
    np.testing.assert_array_equal(result["digit"], result["probabilities"].argmax(axis=1))
