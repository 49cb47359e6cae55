"""VLAD on a lazily generated sequence of per-image descriptors, in bounded memory.

A sequence of 3,000 images x 300 descriptors x 512 float32 (1.72 GiB if held at once) is
generated on demand, image by image, and given to ``VLADEncoder`` as it is: ``fit`` reads a
bounded subsample, ``transform`` encodes a batch of images at a time. The script prints the
peak resident memory of the whole run beside the size of the input, and first checks on a
small case that the lazy path gives exactly the codes of the in-memory one.

Usage: python benchmarks/bench_vlad_lazy.py [--images 3000] [--rows 300] [--dim 512] [--k 64]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from cnnfeatures import LocalDescriptors, VLADEncoder


class LazyDescriptors:
    """Descriptors of image ``i``, computed when asked for (nothing is kept)."""

    def __init__(self, n_images: int, rows: int, dim: int, seed: int = 0):
        self.n_images, self.rows, self.dim, self.seed = n_images, rows, dim, seed

    def __len__(self) -> int:
        return self.n_images

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_images:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, i])
        # A few clusters per image, so that k-means has structure to find.
        centres = rng.normal(0, 3, (4, self.dim)).astype(np.float32)
        labels = rng.integers(0, 4, self.rows)
        return centres[labels] + rng.standard_normal((self.rows, self.dim), np.float32)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def check_small_case() -> float:
    lazy = LazyDescriptors(20, 30, 16, seed=1)
    in_memory = LocalDescriptors.from_arrays([lazy[i] for i in range(len(lazy))])
    a = VLADEncoder(k=4, pca_components=8, random_state=0).fit(lazy).transform(lazy)
    b = VLADEncoder(k=4, pca_components=8, random_state=0).fit(in_memory).transform(in_memory)
    return float(np.abs(a - b).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=64)
    args = parser.parse_args()

    difference = check_small_case()
    print(f"small case, lazy vs in-memory codes: max |difference| = {difference:g}")
    lazy = LazyDescriptors(args.images, args.rows, args.dim)
    held = args.images * args.rows * args.dim * 4 / 2**30
    print(f"input: {args.images} images x {args.rows} x {args.dim} float32 = {held:.2f} GiB "
          "if held at once (generated on demand)")
    start = time.perf_counter()
    vlad = VLADEncoder(k=args.k, pca_components=128, random_state=0).fit(lazy)
    fitted = time.perf_counter()
    codes = vlad.transform(lazy)
    done = time.perf_counter()
    print(f"fit on {vlad.n_fit_descriptors_:,} descriptors: {fitted - start:.1f} s; "
          f"transform: {done - fitted:.1f} s; codes {codes.shape} "
          f"({codes.nbytes / 2**20:.0f} MiB)")
    print(f"peak RSS of the whole run: {peak_rss_gib():.2f} GiB "
          f"(target <= 1.5; input {held:.2f} GiB)")


if __name__ == "__main__":
    main()
