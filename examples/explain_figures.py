"""The report's explanation figures, with the offline ImageNet VGG-16 (saved as PNGs).

For chest_xray and mini_scene, a fixed-feature pipeline (VGG-16 ``block5_pool``, mean
pooling, L2, linear SVM) is trained on train/ (chest_xray: a stratified subsample of
``--train`` images), then for a few test images it writes:

- ``<set>_gradcam_<i>.png``: Grad-CAM of ``block5_pool`` over the image, for the predicted
  class (Figures 15-16, 19, 22-23);
- ``<set>_layers_<i>.png``: the image, then Grad-CAM of block1_pool ... block5_pool side by
  side (Figures 24-28);
- ``<set>_integrated_gradients_<i>.png``: pixel attributions by integrated gradients (the
  report used SHAP; see cnnfeatures.explain for why not here).

Usage: python examples/explain_figures.py [-o explain_figures] [--images 3] [--train 400]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="explain_figures")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--train", type=int, default=400)
    args = parser.parse_args()

    from PIL import Image
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from cnnfeatures import CNNFeatureExtractor, load_image_folder
    from cnnfeatures.explain import grad_cam, integrated_gradients, layer_panel, overlay

    os.makedirs(args.output, exist_ok=True)
    for name in ("chest_xray", "mini_scene"):
        train = load_image_folder(SHARED / "data" / name, split="train")
        test = load_image_folder(SHARED / "data" / name, split="test")
        X, y = train.filenames, train.target
        if args.train < len(X):
            X, _, y, _ = train_test_split(X, y, train_size=args.train, stratify=y,
                                          random_state=0)
        model = make_pipeline(
            CNNFeatureExtractor(backbone="vgg16", layer="block5_pool", pooling="mean",
                                weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"),
            LinearSVC(),
        ).fit(X, y)
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(test.filenames), args.images, replace=False)
        predicted = model.predict(test.filenames[chosen])
        for k, (i, label) in enumerate(zip(chosen, predicted)):
            path = test.filenames[i]
            truth = test.target_names[test.target[i]]
            said = test.target_names[label]
            (heat,) = grad_cam(model, [path], layer="block5_pool")
            out = Path(args.output) / f"{name}_gradcam_{k}.png"
            Image.fromarray(overlay(path, heat)).save(out)
            Image.fromarray(layer_panel(model, path)).save(
                Path(args.output) / f"{name}_layers_{k}.png")
            (ig,) = integrated_gradients(model, [path], steps=32)
            Image.fromarray(overlay(path, ig, alpha=0.6)).save(
                Path(args.output) / f"{name}_integrated_gradients_{k}.png")
            print(f"{name} test image {Path(path).name}: true {truth}, predicted {said} "
                  f"-> {out} (+ _layers_, _integrated_gradients_)")


if __name__ == "__main__":
    main()
