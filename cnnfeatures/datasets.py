"""Load image folders laid out as ``<root>/[<split>/]<class>/<image>``."""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .images import ImageLoadError, dicom_tag, is_image_file

__all__ = ["PATIENT_PATTERNS", "load_image_folder"]

#: Ready-made ``group_pattern`` values for the datasets of ../shared/data.
#: ``chest_xray``: ``person1372_bacteria_3501.jpeg`` -> ``person1372``,
#: ``NORMAL2-IM-0373-0001.jpeg`` -> ``NORMAL2-IM-0373``, ``IM-0001-0001.jpeg`` -> ``IM-0001``.
#: ``malaria_cells``: the slide series, ``C100P61ThinF_IMG_..._cell_163.png`` -> ``C100``
#: (the names vary: ``C51AP12thinF_``, ``C5BP1_thinF_``, ``C3thin_original_``, ``C1_thinF_``;
#: the set was split by this ``C<n>`` prefix, so grouping by it keeps folds slide-disjoint).
PATIENT_PATTERNS = {
    "chest_xray": r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)",
    "malaria_cells": r"^(C\d+)",
}


class NotAnImageWarning(UserWarning):
    """Files in a dataset folder that are not images were left out (they are listed)."""


def _group_of(pattern: re.Pattern[str], filename: str) -> str | None:
    match = pattern.search(filename)
    if match is None:
        return None
    if "group" in pattern.groupindex:
        return match.group("group")
    for value in match.groups():
        if value is not None:
            return value
    return match.group(0)


def _file_kind(path: Path) -> str:
    """"file", "directory", or what else the entry is (never opened)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken link"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


def load_image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    group_pattern: str | None = None,
    on_non_image: str = "warn",
) -> Bunch:
    """Load the file names and labels of an image folder.

    Two layouts are read: ``<root>/<split>/<class>/<image>`` (give ``split``) and
    ``<root>/<class>/<image>``. Classes are the sub-folders, sorted by name; ``target[i]``
    indexes ``target_names``. Files are sorted, so the result is the same on every machine.

    Parameters
    ----------
    root : str or Path
        The dataset folder.
    split : str, optional
        The split sub-folder to read (``"train"``, ``"test"``, ...).
    group_pattern : str, optional
        A regular expression searched in each file name to give ``groups`` (a patient, a
        slide), so that ``GroupKFold`` keeps one patient's images on one side of a split.
        The named group ``group`` is used when present, else the first group that matched,
        else the whole match. A key of :data:`PATIENT_PATTERNS` (``"chest_xray"``) names a
        ready-made pattern. ``"dicom:<Keyword>"`` reads a DICOM tag instead, e.g.
        ``"dicom:PatientID"``. A file that does not match is an error.
    on_non_image : {"warn", "raise"}, default="warn"
        What to do with files whose extension is not an image's (``.txt``, ``.DS_Store``)
        and with entries that are not regular files (FIFOs, devices, broken links, which
        are never opened): leave them out with a :class:`NotAnImageWarning` that lists
        them, or raise. They are listed in ``skipped`` either way; nothing is dropped
        silently.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``filenames`` (ndarray of str), ``target`` (ndarray of int), ``target_names``
        (list of str), ``groups`` (ndarray of str, or None), ``skipped`` (list of str) and
        ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``root/split`` does not exist (the message lists the splits found).
    ValueError
        If there is no class folder, a class folder holds no image, or a file does not
        match ``group_pattern``, or (with ``"dicom:<Keyword>"``) a file is not readable
        as DICOM.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for cls in ("cat", "dog"):
    ...     (root / "train" / cls).mkdir(parents=True)
    ...     Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "train" / cls / "a.png")
    >>> data = load_image_folder(root, split="train")
    >>> data.target_names, data.target.tolist()
    (['cat', 'dog'], [0, 1])
    """
    if on_non_image not in ("warn", "raise"):
        raise ValueError(f"on_non_image must be 'warn' or 'raise', got {on_non_image!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    folder = root
    if split is not None:
        folder = root / split
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise FileNotFoundError(f"{folder}: no split {split!r} in {root}; found {found}")

    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not class_dirs:
        raise ValueError(
            f"{folder}: no class sub-folders; expected <root>/[<split>/]<class>/<image>"
        )

    pattern = None
    dicom_keyword = None
    if group_pattern is not None and group_pattern.startswith("dicom:"):
        dicom_keyword = group_pattern.split(":", 1)[1]
    elif group_pattern is not None:
        pattern = re.compile(PATIENT_PATTERNS.get(group_pattern, group_pattern))

    filenames: list[str] = []
    target: list[int] = []
    groups: list[str] = []
    skipped: list[str] = []
    unmatched: list[str] = []
    unreadable: list[str] = []
    for label, class_dir in enumerate(class_dirs):
        n_images = 0
        for path in sorted(class_dir.rglob("*")):
            kind = _file_kind(path)
            if kind == "directory":
                continue
            if kind != "file" or not is_image_file(path):
                # FIFOs, devices and broken links are never read (a FIFO would block).
                skipped.append(str(path) if kind == "file" else f"{path} ({kind})")
                continue
            n_images += 1
            filenames.append(str(path))
            target.append(label)
            if dicom_keyword is not None:
                try:
                    group = dicom_tag(path, dicom_keyword)
                except ImageLoadError as exc:
                    unreadable.append(str(exc))
                    group = ""
                if group is None:
                    unmatched.append(path.name)
                groups.append(group or "")
            elif pattern is not None:
                group = _group_of(pattern, path.name)
                if group is None:
                    unmatched.append(path.name)
                groups.append(group or "")
        if n_images == 0:
            raise ValueError(f"{class_dir}: class folder '{class_dir.name}' holds no image")

    if unreadable:
        raise ValueError(
            f"{len(unreadable)} file(s) could not be read as DICOM to find their "
            f"{dicom_keyword}: " + "; ".join(unreadable[:5])
        )
    if unmatched:
        what = (f"lack the DICOM tag {dicom_keyword}" if dicom_keyword
                else f"do not match group_pattern {pattern.pattern!r}")
        raise ValueError(f"{len(unmatched)} file(s) {what} (e.g. {unmatched[:3]})")
    if skipped:
        message = (f"{len(skipped)} file(s) in {folder} are not images (or not regular "
                   f"files) and were left out: {skipped}")
        if on_non_image == "raise":
            raise ValueError(message)
        warnings.warn(message, NotAnImageWarning, stacklevel=2)

    return Bunch(
        filenames=np.asarray(filenames, dtype=str),
        target=np.asarray(target, dtype=np.int64),
        target_names=[p.name for p in class_dirs],
        groups=np.asarray(groups, dtype=str) if group_pattern is not None else None,
        skipped=skipped,
        root=str(folder),
    )
