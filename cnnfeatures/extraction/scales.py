"""Scales: the report's input sizes, ``224 + 320·n`` pixels for scale number ``n``.

One value type, :class:`Scales`, holds a validated set of scale numbers wherever the
library meets them (an extractor's ``scales``, a budget's, the command line's
``--scales``), and knows their sides and how a table labels them.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral

__all__ = ["MAX_SCALE", "Scales", "scale_side"]

#: Largest scale accepted: side 224 + 320·5 = 1824. VGG's first block alone then needs
#: about 0.85 GB of activations per image; beyond that one image may not fit in memory.
MAX_SCALE = 5


def scale_side(n: int) -> int:
    """Input side of scale ``n`` in the report: ``224 + 320 * n``.

    Examples
    --------
    >>> [scale_side(n) for n in (0, 1, 2)]
    [224, 544, 864]
    """
    return 224 + 320 * int(n)


class Scales(tuple):
    """Scale numbers, checked: integers in ``0..MAX_SCALE``, at least one, none twice.

    A tuple of ints (it compares, hashes, pickles and prints as one), made with
    :meth:`of`, which says what is wrong with a value and under which name.

    Examples
    --------
    >>> s = Scales.of([0, 2])
    >>> s, s.sides, s.label
    ((0, 2), (224, 864), '(0, 2)')
    >>> Scales.of((1,)).label
    '1'
    >>> Scales.of([0, 9])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: scales must be integers n with 0 <= n <= 5 (side 224 + 320·n, ...
    """

    __slots__ = ()

    @classmethod
    def of(cls, value: Iterable[int], name: str = "scales") -> Scales:
        """``value`` as Scales; a ValueError naming ``name`` when it is not one."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (Integral, str, bytes)) or value is None:
            raise ValueError(
                f"{name} must be a tuple of scale numbers n (side 224 + 320·n), e.g. (0,) or "
                f"(0, 1, 2); got {value!r}")
        values = tuple(value)
        if not values:
            raise ValueError(f"{name} must hold at least one scale number, e.g. (0,)")
        for n in values:
            if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n <= MAX_SCALE:
                raise ValueError(
                    f"{name} must be integers n with 0 <= n <= {MAX_SCALE} (side 224 + 320·n, "
                    f"at most {scale_side(MAX_SCALE)} pixels); got {n!r} in {name}={value!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a scale, got {value!r}")
        return cls(int(n) for n in values)

    @property
    def sides(self) -> tuple[int, ...]:
        """Input side of each scale, in order."""
        return tuple(scale_side(n) for n in self)

    @property
    def label(self) -> str:
        """How result tables name them: ``"1"`` for one scale, ``"(0, 1)"`` for several."""
        return str(self[0]) if len(self) == 1 else str(tuple(self))
