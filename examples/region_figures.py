"""What RegionCropper keeps of chest X-rays, and Grad-CAM without and with it (PNGs).

Writes, in ``--output``:

- ``chest_xray_regions.png``: test X-rays of both classes, what ``RegionCropper(mode="mask")`` keeps
  of each (the rest dimmed, the box outlined);
- ``chest_xray_gradcam_region.png``: Grad-CAM of ``block1_pool`` ... ``block5_pool`` for
  the README's X-ray, top row a pipeline on whole images (VGG-16 ``block5_pool`` mean +
  linear SVM, trained on ``--train`` training images as examples/explain_figures.py
  does), bottom row the same pipeline with ``RegionCropper(mode="mask")`` first.

Usage: python examples/region_figures.py [-o region_figures] [--train 400] [--images 6]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: The X-ray of the README's Grad-CAM figure.
README_XRAY = "person158_bacteria_742.jpg"


def save(picture: np.ndarray, path: Path) -> None:
    """A PNG of 256 colours: a quarter of the bytes, for pictures kept in the docs."""
    from PIL import Image

    Image.fromarray(picture).quantize(256, method=Image.Quantize.MEDIANCUT,
                                      dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="region_figures")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()

    from PIL import Image
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from cnnfeatures import CNNFeatureExtractor, RegionCropper, load_image_folder
    from cnnfeatures.explain import layer_panel
    from cnnfeatures.images import load_image_native
    from cnnfeatures.regions import foreground_region, region_overlay

    os.makedirs(args.output, exist_ok=True)
    train = load_image_folder(SHARED / "data" / "chest_xray", split="train")
    test = load_image_folder(SHARED / "data" / "chest_xray", split="test")

    # Test X-rays of each class in turn, evenly spaced through the split.
    by_class = [np.flatnonzero(test.target == c) for c in range(len(test.target_names))]
    chosen = [ids[int(k * len(ids) / args.images)] for k in range(args.images // 2)
              for ids in by_class]
    tiles = []
    for i in chosen:
        image = load_image_native(test.filenames[i])
        found = foreground_region(image)
        tiles.append(image if found is None else region_overlay(image, *found))
    side = 224
    row = [np.asarray(Image.fromarray(np.asarray(t, np.uint8)).convert("RGB")
                      .resize((side, side))) for t in tiles]
    save(np.concatenate(row, axis=1), Path(args.output) / "chest_xray_regions.png")

    X, y = train.filenames, train.target
    if args.train < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=args.train, stratify=y, random_state=0)
    xray = next(f for f in test.filenames if Path(f).name == README_XRAY)
    panels = []
    for steps in ([], [RegionCropper(mode="mask")]):
        model = make_pipeline(
            *steps,
            CNNFeatureExtractor(backbone="vgg16", layer="block5_pool", pooling="mean",
                                weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"),
            LinearSVC()).fit(X, y)
        panels.append(layer_panel(model, xray))
        said = test.target_names[model.predict([xray])[0]]
        print(f"{'with' if steps else 'without'} RegionCropper: {README_XRAY} predicted {said}")
    out = Path(args.output) / "chest_xray_gradcam_region.png"
    save(np.concatenate(panels, axis=0), out)
    print(f"-> {out}, {Path(args.output) / 'chest_xray_regions.png'}")


if __name__ == "__main__":
    main()
