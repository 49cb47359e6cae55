"""What a Keras classifier trains on: images decoded to arrays, batches drawn from a seed,
fixed augmented views, the validation split and the loss weights.

Everything random here comes from the fit's seed (and the epoch, the batch, an image's
pixels): never from a global generator, so that the same fit gets the same batches in any
process and whatever ran before it.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import _check_sample_weight

from ..backend import load_keras
from ..images import check_image_sources, image_name, load_image
from ..targets import check_targets

__all__ = ["SmallDataWarning", "draw_views", "encode_targets", "epoch_batches", "held_out",
           "load_batch", "loss_weights", "pixels_digest", "validation_split"]


class SmallDataWarning(UserWarning):
    """No validation split could be carved from the training images: no early stopping."""


def load_batch(sources, side: int) -> np.ndarray:
    """Decode and resize images to a uint8 (n, side, side, 3) array (compact in memory)."""
    return np.stack([
        np.rint(load_image(s, side, name=image_name(s, i))).astype(np.uint8)
        for i, s in enumerate(sources)
    ])


def pixels_digest(array: np.ndarray) -> str:
    """A digest of an array's bytes: what identifies an image (or labels) in cache and
    checkpoint keys."""
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=20).hexdigest()


def epoch_batches(images, targets, batch_size: int, preprocess, policy, seed: int,
                  weights=None, *, views: bool = False):
    """A keras PyDataset over images (uint8) or activations (float32), in a new random
    order every epoch: preprocess per batch, augment on the fly. With ``views``,
    ``images[v, i]`` is view ``v`` of image ``i``: every epoch takes one view of each image,
    drawn anew.

    Everything random comes from ``seed`` and the epoch: an epoch's order and views from a
    generator of (seed, epoch), a batch's augmentation from one of (seed, epoch, batch). So
    the same fit gets the same batches in whatever order Keras asks for them, and a fit
    resumed at epoch ``e`` (``start(e)``) those the uninterrupted fit had. Fit it with
    ``shuffle=False``: Keras' own shuffling of the batches draws from NumPy's global
    generator, which whatever ran before the fit has advanced."""
    keras = load_keras()
    n_images = len(targets)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.start(0)

        def __len__(self):
            return -(-n_images // batch_size)

        def start(self, epoch: int) -> None:
            """Serve the batches of ``epoch``."""
            self.epoch = epoch
            rng = np.random.RandomState([seed, epoch])
            self.order = rng.permutation(n_images)
            if views:
                self.view = rng.randint(len(images), size=n_images)

        def on_epoch_end(self):
            self.start(self.epoch + 1)

        def __getitem__(self, index):
            idx = self.order[index * batch_size : (index + 1) * batch_size]
            x = (images[self.view[idx], idx] if views else images[idx]).astype(np.float32)
            if policy is not None:  # a new random view of every image, every epoch
                rng = np.random.RandomState([seed, self.epoch, index])
                x = np.stack([policy(img, rng) for img in x])
            out = (preprocess(x), targets[idx])
            return out + (weights[idx],) if weights is not None else out

    return Batches()


def draw_views(images, policy, n_views: int, seed: int) -> np.ndarray:
    """The images and ``n_views`` random views of each, as uint8 ``(n_views + 1, n, ...)``
    (the policy's output is on [0, 255]; rounding it keeps the views as compact as the
    images).

    Each image's views are drawn from its own generator, seeded by ``seed`` and the image's
    pixels: the same image gets the same views in every fold of a cross-validation and
    every fit of a grid search, so their cached prefixes serve them all."""
    views = np.empty((n_views + 1, *images.shape), np.uint8)
    views[0] = images
    for i, image in enumerate(images):
        rng = np.random.RandomState([seed, int(pixels_digest(image)[:8], 16)])
        for v in range(1, n_views + 1):
            views[v, i] = np.rint(policy(image.astype(np.float32), rng))
    return views


def validation_split(targets, groups, fraction: float, seed: int, *, max_epochs: int):
    """Indices ``(train, validation)`` of a stratified (or, with ``groups``, group-keeping)
    split holding out ``fraction`` of the images, or None with a :class:`SmallDataWarning`
    when none can be carved (the fit then runs ``max_epochs`` without early stopping)."""
    if groups is not None:
        splitter = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
        split = next(splitter.split(np.zeros(len(targets)), targets, groups))
        if len(split[0]) and len(split[1]):
            return split
        reason = f"{len(set(groups))} group(s)"
    else:
        splitter = StratifiedShuffleSplit(1, test_size=fraction, random_state=seed)
        try:
            return next(splitter.split(np.zeros(len(targets)), targets))
        except ValueError as exc:
            reason = str(exc)
    warnings.warn(
        f"cannot carve a validation set of fraction {fraction} from {len(targets)} images "
        f"({reason}): training for max_epochs={max_epochs} without early stopping; pass "
        "validation_data or more images to stop early", SmallDataWarning, stacklevel=5)
    return None


def loss_weights(targets, classes, class_weight=None, sample_weight=None) -> np.ndarray:
    """Per-image loss weights: ``class_weight`` ("balanced", a dict by class, or None)
    times ``sample_weight`` (ones if none); ``targets`` are class indices.

    Examples
    --------
    >>> loss_weights(np.array([0, 0, 0, 1]), ["a", "b"], "balanced").tolist()
    [0.6666666865348816, 0.6666666865348816, 0.6666666865348816, 2.0]
    """
    weights = np.ones(len(targets), np.float32)
    if class_weight == "balanced":
        indices = np.arange(len(classes))
        weights *= compute_class_weight("balanced", classes=indices, y=targets)[targets]
    elif class_weight is not None:
        per_class = np.array([float(class_weight.get(c, 1.0)) for c in classes])
        weights *= per_class[targets]
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, np.zeros((len(targets), 1)),
                                             dtype=np.float32)
        weights *= sample_weight
    return weights.astype(np.float32)


def encode_targets(y, n_images: int, fitted_classes: np.ndarray | None,
                   class_weight) -> tuple[np.ndarray, np.ndarray]:
    """The classes of ``y`` and each label's class index, checked: at least two classes,
    the fitted ones when training goes on (``fitted_classes``), and no ``class_weight``
    key that is not a class."""
    y = check_targets(y, n_images)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"y has a single class {classes.tolist()}; need at least 2")
    if fitted_classes is not None and not np.array_equal(classes, fitted_classes):
        raise ValueError(f"warm_start=True: y has classes {classes.tolist()}, the "
                         f"fitted model has {fitted_classes.tolist()}")
    if isinstance(class_weight, dict):
        unknown = [key for key in class_weight if key not in set(classes.tolist())]
        if unknown:
            raise ValueError(f"class_weight names class(es) {unknown} that y does not "
                             f"hold; classes are {classes.tolist()}")
    return classes, np.searchsorted(classes, y)


def held_out(sources, targets, classes, groups, validation_data, fraction: float, seed: int,
             *, max_epochs: int):
    """Training indices, and the validation ``(images, class indices)`` or None: the
    explicit ``validation_data``, else a split of ``fraction`` of the images (see
    :func:`validation_split`)."""
    if validation_data is not None:
        val_sources = check_image_sources(validation_data[0], name="validation X")
        val_y = check_targets(validation_data[1], len(val_sources), name="validation y")
        unknown = sorted(set(val_y.tolist()) - set(classes.tolist()), key=str)
        if unknown:
            raise ValueError(f"validation y holds class(es) {unknown} that y does not; "
                             f"classes are {classes.tolist()}")
        return np.arange(len(sources)), (val_sources, np.searchsorted(classes, val_y))
    if groups is not None and len(groups) != len(sources):
        raise ValueError(f"groups has {len(groups)} entries for {len(sources)} images")
    split = validation_split(targets, groups, fraction, seed, max_epochs=max_epochs)
    if split is None:
        return np.arange(len(sources)), None
    train_idx, val_idx = split
    return train_idx, ([sources[i] for i in val_idx], targets[val_idx])
