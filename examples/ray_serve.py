"""Serves an MPSNNGraph with Ray Serve: the MNIST network of mnist_inference.py (seeded random
weights) on a few replicas, each a Ray actor with its own graph, requests gathered into batches.

    pip install "mpsnn[ray]"        # ray[serve,data]
    python examples/ray_serve.py [--replicas 2] [--requests 64] [--http]

- Replicas: `num_replicas` actors, one CPU each; Serve spreads requests over them. Each replica
  builds its graph once (the weights are seeded, so every replica has the same network) and keeps
  it: the plan for a batch size is compiled at its first use and reused (a graph may be run from
  several threads at once).
- Dynamic batching: `@serve.batch` collects the single images that arrive within
  `batch_wait_timeout_s` (up to `max_batch_size`) into one call, and the replica runs them as one
  (N, 28, 28, 1) batch: one `graph.run` per batch rather than per image.
- The GIL: `graph.run` releases it while the graph runs (cpp/bindings/graph.cpp), so the replica
  runs it on a worker thread (`asyncio.to_thread`) and its event loop keeps accepting and batching
  requests meanwhile.

The demo starts a local Ray (loopback, 2 CPUs), deploys, sends `--requests` images through a
deployment handle (with `--http` also one over HTTP to 127.0.0.1), checks every answer against a
graph run in this process, prints the batch sizes the replicas saw, and shuts Ray down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mnist_inference  # noqa: E402  (the network: mnist_inference.build)

SEED = 0
Array = npt.NDArray[np.float32]


def local_graph() -> Any:
    """The served network, built here (same seed, so the same weights as in every replica)."""
    import mpsnn

    return mnist_inference.build(mpsnn.MTLCreateSystemDefaultDevice(), np.random.default_rng(SEED))


def digits(count: int, seed: int = 1) -> Array:
    """`count` synthetic 28x28 grey images in [0, 1], (count, 28, 28, 1) float32."""
    return np.random.default_rng(seed).random((count, 28, 28, 1), dtype=np.float32)


def deployment(replicas: int = 2, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.01) -> Any:
    """The Serve application: `replicas` replicas of a class holding one graph. Made in a function
    so that importing this module needs no Ray."""
    from ray import serve

    @serve.deployment(num_replicas=replicas, max_ongoing_requests=4 * max_batch_size,
                      ray_actor_options={"num_cpus": 1})
    class MNISTClassifier:
        def __init__(self) -> None:
            self.graph = local_graph()
            self.batch_sizes: list[int] = []

        def run_batch(self, images: Array) -> Array:
            # One graph.run for the whole batch; the GIL is released inside.
            return np.asarray(self.graph.run([images]), np.float32).reshape(len(images), 10)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def classify(self, images: list[Array]) -> list[dict[str, Any]]:
            batch = np.ascontiguousarray(np.stack(images), np.float32)
            self.batch_sizes.append(len(images))
            probabilities = await asyncio.to_thread(self.run_batch, batch)
            return [{"probabilities": p, "batch_size": len(images), "replica": os.getpid()} for p in probabilities]

        def stats(self) -> dict[str, Any]:
            return {"replica": os.getpid(), "batch_sizes": list(self.batch_sizes)}

        async def __call__(self, request: Any) -> dict[str, Any]:
            # HTTP: a JSON body {"image": 28x28 nested list}; answers the probabilities and the digit.
            body = await request.json()
            image = np.asarray(body["image"], np.float32).reshape(28, 28, 1)
            answer = await self.classify(image)
            p = answer["probabilities"]
            return {"digit": int(np.argmax(p)), "probabilities": p.tolist()}

    # serve.deployment made a Deployment of the class (its type hints keep the class's type).
    app: Any = MNISTClassifier
    return app.bind()


def start_local_ray(num_cpus: int = 2) -> None:
    """A local single-node Ray bound to the loopback interface, without the dashboard. Workers inherit
    PYTHONPATH, extended so that they import this folder's modules and the same mpsnn."""
    import ray

    import mpsnn

    paths = [str(HERE), str(pathlib.Path(mpsnn.__file__).resolve().parents[1])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=False, log_to_driver=False)


def serve_and_check(replicas: int, requests: int, http_port: int | None = None) -> dict[str, Any]:
    """Deploys, sends `requests` images concurrently through a handle (plus one over HTTP when
    `http_port` is set), and compares each answer with a local graph run. Returns what it saw."""
    from ray import serve

    if http_port is not None:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    handle = serve.run(deployment(replicas=replicas), name="mnist", route_prefix="/mnist" if http_port else None)
    images = digits(requests)
    t0 = time.perf_counter()
    responses = [handle.classify.remote(img) for img in images]
    answers = [r.result(timeout_s=120) for r in responses]
    elapsed = time.perf_counter() - t0
    served = np.stack([a["probabilities"] for a in answers])
    expected = np.asarray(local_graph().run([images]), np.float32).reshape(requests, 10)
    worst = float(np.abs(served - expected).max())
    http_digit = None
    if http_port is not None:
        import json
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/mnist", method="POST",
                                     data=json.dumps({"image": images[0, :, :, 0].tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as reply:
            http_digit = json.loads(reply.read())["digit"]
    return {"served": served, "expected": expected, "max_abs_diff": worst, "seconds": elapsed,
            "batch_sizes": [a["batch_size"] for a in answers], "replicas": sorted({a["replica"] for a in answers}),
            "http_digit": http_digit, "expected_digits": expected.argmax(axis=1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--http", action="store_true", help="also send one request over HTTP (127.0.0.1:8123)")
    args = p.parse_args()
    try:
        import ray
        from ray import serve
    except ImportError:
        print('this example needs Ray Serve: pip install "ray[serve,data]" (or mpsnn[ray])')
        return
    start_local_ray(num_cpus=max(2, args.replicas))
    try:
        seen = serve_and_check(args.replicas, args.requests, 8123 if args.http else None)
    finally:
        serve.shutdown()
        ray.shutdown()
    sizes = seen["batch_sizes"]
    print(f"{args.requests} requests on {len(seen['replicas'])} replicas in {seen['seconds']:.2f} s; "
          f"batch sizes seen: max {max(sizes)}, mean {np.mean(sizes):.1f}")
    print(f"max |served - local| = {seen['max_abs_diff']:.2e}")
    if seen["http_digit"] is not None:
        print(f"HTTP: digit {seen['http_digit']} (local run: {seen['expected_digits'][0]})")


if __name__ == "__main__":
    main()
