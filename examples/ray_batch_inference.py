"""Offline inference with Ray Data: a dataset of images mapped through an MPSNNGraph (the MNIST
network of mnist_inference.py, seeded random weights) on a pool of actors.

    pip install "mpsnn[ray]"        # ray[serve,data]
    python examples/ray_batch_inference.py [--images DIR] [--count 512] [--actors 2] [--batch 64]

Ray Data reads the images in blocks and streams them through `map_batches`: each actor of the pool
builds the graph once, in its constructor, and then receives batches of `--batch` images as NumPy
arrays; one `graph.run` per batch (the GIL released while it runs). The dataset is either
`--count` synthetic 28x28 digits (`ray.data.from_items`, with an `id` column) or the image files
of `--images DIR` (`ray.data.read_images`, converted to 28x28 grey). The results keep the `id`,
so they can be put back in order whatever order the blocks finish in.

The demo starts a local Ray (loopback, 2 CPUs), runs the pipeline, and for the synthetic digits
checks every result against a graph run in this process, then shuts Ray down.
"""

from __future__ import annotations

import argparse
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


def build_graph() -> Any:
    import mpsnn

    return mnist_inference.build(mpsnn.MTLCreateSystemDefaultDevice(), np.random.default_rng(SEED))


class Classifier:
    """One actor of the pool: a graph built once, run on every batch it is given."""

    def __init__(self) -> None:
        self.graph = build_graph()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = np.asarray(batch["image"], np.float32)
        if images.ndim == 3:  # (N, H, W) grey files -> (N, H, W, 1)
            images = images[..., None]
        if images.max(initial=0.0) > 1.0:  # 8-bit files -> [0, 1]
            images = images / 255.0
        images = np.ascontiguousarray(images, np.float32)
        probabilities = np.asarray(self.graph.run([images]), np.float32).reshape(len(images), 10)
        return {"id": np.asarray(batch["id"]), "digit": probabilities.argmax(axis=1),
                "probabilities": probabilities, "actor": np.full(len(images), os.getpid())}


def digits(count: int, seed: int = 1) -> Array:
    """`count` synthetic 28x28 grey images in [0, 1], (count, 28, 28, 1) float32."""
    return np.random.default_rng(seed).random((count, 28, 28, 1), dtype=np.float32)


def dataset(count: int, images_dir: str | None = None, blocks: int = 8) -> Any:
    import ray

    if images_dir is None:
        return ray.data.from_items([{"id": i, "image": img} for i, img in enumerate(digits(count))],
                                   override_num_blocks=blocks)
    ds = ray.data.read_images(images_dir, mode="L", size=(28, 28), include_paths=True)
    return ds.map(lambda row: {"id": row["path"], "image": row["image"]})


def classify(ds: Any, actors: int = 2, batch_size: int = 64) -> dict[str, Any]:
    """Maps `ds` through the graph on a pool of `actors` actors (one CPU each) and collects the
    results, sorted by id."""
    import ray

    out = ds.map_batches(Classifier, compute=ray.data.ActorPoolStrategy(size=actors), batch_size=batch_size,
                         num_cpus=1, batch_format="numpy")
    rows: dict[str, list[Any]] = {"id": [], "digit": [], "probabilities": [], "actor": []}
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        for k in rows:
            rows[k].extend(batch[k])
    order = np.argsort(np.asarray(rows["id"]), kind="stable")
    return {k: np.asarray(v)[order] for k, v in rows.items()}


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
    ray.data.DataContext.get_current().enable_progress_bars = False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", metavar="DIR", help="a folder of image files (default: synthetic digits)")
    p.add_argument("--count", type=int, default=512, help="synthetic digits (without --images)")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    try:
        import ray
    except ImportError:
        print('this example needs Ray Data: pip install "ray[serve,data]" (or mpsnn[ray])')
        return
    start_local_ray(num_cpus=max(2, args.actors))
    try:
        t0 = time.perf_counter()
        result = classify(dataset(args.count, args.images), args.actors, args.batch)
        elapsed = time.perf_counter() - t0
    finally:
        ray.shutdown()
    n = len(result["id"])
    print(f"{n} images on {len(set(result['actor'].tolist()))} actors in {elapsed:.2f} s; "
          f"digits counted: {np.bincount(result['digit'], minlength=10).tolist()}")
    if args.images is None:
        expected = np.asarray(build_graph().run([digits(args.count)]), np.float32).reshape(args.count, 10)
        print(f"max |pipeline - local| = {float(np.abs(result['probabilities'] - expected).max()):.2e}")


if __name__ == "__main__":
    main()
