"""Peak memory of feature extraction for 1,000 and 10,000 image paths, side by side.

Each size runs in a fresh process (so each has its own peak RSS). The paths cycle through
../shared/data/chest_xray/test; the cache is disabled so that every path is read, decoded
and forwarded. The default backbone is MobileNetV2 with random weights, to keep 10,000
images within minutes on 2 cores: memory streaming does not depend on the network.

Usage: python benchmarks/bench_memory.py [--sizes 1000 10000] [--backbone mobilenet_v2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"

CHILD = """
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from cnnfeatures import CNNFeatureExtractor, load_image_folder
n, backbone, layer = int(sys.argv[1]), sys.argv[2], sys.argv[3]
files = load_image_folder(sys.argv[4], split="test").filenames
paths = [files[i % len(files)] for i in range(n)]
ext = CNNFeatureExtractor(backbone=backbone, weights=None, layer=layer, pooling="mean",
                          cache=False).fit(paths[:1])
ext.transform(paths[:32])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
features = ext.transform(paths)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "peak_mib": peak, "warm_mib": base, "seconds": seconds,
                  "output_mib": features.nbytes / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--layer", default="out_relu")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), args.backbone, args.layer,
             str(SHARED / "data" / "chest_xray")],
            capture_output=True, text=True, check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'images':>8} {'peak RSS MiB':>13} {'after warm-up':>14} {'output MiB':>11} "
          f"{'seconds':>8} {'images/s':>9}")
    for r in rows:
        print(f"{r['n']:>8} {r['peak_mib']:>13.0f} {r['warm_mib']:>14.0f} "
              f"{r['output_mib']:>11.1f} {r['seconds']:>8.1f} {r['n'] / r['seconds']:>9.1f}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"peak growth from {a['n']} to {b['n']} images: "
              f"{b['peak_mib'] - a['peak_mib']:+.0f} MiB "
              f"(output array alone grows {b['output_mib'] - a['output_mib']:+.1f} MiB)")


if __name__ == "__main__":
    main()
