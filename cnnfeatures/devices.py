"""Where the networks run: the ``device`` parameter of the extractor and the classifiers.

``"auto"`` leaves the choice to Keras: the first GPU its backend sees, else the CPU.
``"cpu"`` keeps a process on the CPU even where a GPU is visible (a GPU shared with
another job, or results to compare with a CPU run); ``"gpu"`` or ``"gpu:N"`` asks for a
GPU and is an error, at ``fit``, where the backend sees none. The network is built on the
device too (its weights live there), so one network is kept per device.

Features computed on another device differ in their last float32 digits only: the device
is not a part of the activation cache's keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from .backend import available_devices, backend_name, load_keras

__all__ = ["check_device", "device_scope"]

_DEVICE = re.compile(r"(?P<kind>cpu|gpu)(:(?P<index>\d+))?")


def check_device(device: str, parameter: str = "device") -> str:
    """``device`` checked and in its full form: ``"auto"``, ``"cpu:0"``, ``"gpu:N"``.

    Raises
    ------
    ValueError
        For a malformed name, or a device the backend does not see (the message lists
        those it sees).

    Examples
    --------
    >>> check_device("cpu")
    'cpu:0'
    >>> check_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu', 'gpu' or 'gpu:N', got 'tpu'
    """
    if device == "auto":
        return device
    match = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise ValueError(f"{parameter} must be 'auto', 'cpu', 'gpu' or 'gpu:N', got {device!r}")
    name = f"{match['kind']}:{match['index'] or 0}"
    seen = available_devices()
    if name not in seen:
        raise ValueError(
            f"{parameter}={device!r}: the Keras backend ({backend_name()}) sees no {name}; "
            f"it sees {seen}. Use {parameter}='auto' (a GPU when there is one) or 'cpu'")
    return name


@contextmanager
def device_scope(device: str) -> Iterator[None]:
    """Build and run Keras models on ``device`` (a :func:`check_device` name) inside the
    block; ``"auto"`` leaves Keras' own placement."""
    with nullcontext() if device == "auto" else load_keras().device(device):
        yield
