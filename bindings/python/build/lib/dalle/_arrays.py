"""Arrays in and out of the C library: numpy when it is importable, else
nested lists (and ``array.array`` buffers underneath).

Inputs accept numpy arrays, nested lists/tuples, and (for flat data)
``array.array``. Outputs are numpy arrays when numpy is in use, else nested
lists of Python numbers. :func:`use_numpy` switches numpy off (or back on),
e.g. to test the list path on a machine that has numpy.

Only what the C library cannot see is checked here: types, shapes, and ids
that do not fit in an int32 (which C would see wrapped around). Values
(ids out of the model's range, non-finite pixels) are the library's job.
"""

from __future__ import annotations

import array
import ctypes
import math
import numbers
import os

from ._lib import F32P, I32P

_numpy = None          # the module, False when absent, None before the first look
_numpy_enabled = os.environ.get("DALLE_NO_NUMPY", "") in ("", "0")

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

assert array.array("i").itemsize == 4 and array.array("f").itemsize == 4


def numpy():
    """The numpy module, or None when it is absent or switched off."""
    global _numpy
    if not _numpy_enabled:
        return None
    if _numpy is None:
        try:
            import numpy as np
            _numpy = np
        except ImportError:
            _numpy = False
    return _numpy or None


def use_numpy(enabled: bool):
    """Return numpy arrays (True, when numpy is importable) or nested lists
    (False). The environment variable DALLE_NO_NUMPY=1 sets False at import."""
    global _numpy_enabled
    _numpy_enabled = bool(enabled)


def _is_numpy(x):
    np = numpy()
    if np is not None:
        return isinstance(x, np.ndarray)
    # numpy present but switched off: still accept its arrays as input
    t = type(x)
    return t.__module__ == "numpy" and t.__name__ == "ndarray"


# --------------------------------------------------------------------------
# Nested sequences
# --------------------------------------------------------------------------

def _is_seq(x):
    return isinstance(x, (list, tuple, range, array.array))


def _shape_of(x):
    shape = []
    while _is_seq(x):
        shape.append(len(x))
        if len(x) == 0:
            break
        x = x[0]
    return shape


def _flatten(x, shape, name):
    """Flat list of the leaves of the rectangular nested sequence x."""
    if len(shape) == 1:
        if len(x) != shape[0]:
            raise ValueError(f"{name}: ragged nested list (rows of different lengths)")
        if not isinstance(x, array.array):
            for v in x:
                if _is_seq(v):
                    raise ValueError(f"{name}: ragged nested list (mixed depths)")
        return list(x)
    out = []
    for row in x:
        if not _is_seq(row) or len(row) != shape[1]:
            raise ValueError(f"{name}: ragged nested list (rows of different lengths)")
        out.extend(_flatten(row, shape[1:], name))
    return out


class Buffer:
    """Contiguous C data with its shape; keeps its storage alive."""

    __slots__ = ("ptr", "shape", "_keep")

    def __init__(self, ptr, shape, keep):
        self.ptr, self.shape, self._keep = ptr, tuple(shape), keep

    @property
    def size(self):
        return math.prod(self.shape)


def _from_numpy(x, kind, name):
    np = __import__("numpy")
    if kind == "i":
        if x.dtype.kind == "b" or x.dtype.kind not in "iu":
            if x.size == 0:
                x = x.astype(np.int32)
            else:
                raise TypeError(f"{name}: expected integer token ids, got a {x.dtype} array")
        if x.dtype.itemsize > 4 or x.dtype == np.uint32:
            if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
                raise ValueError(f"{name}: ids outside the int32 range")
        a = np.ascontiguousarray(x, dtype=np.int32)
        return Buffer(a.ctypes.data_as(I32P), a.shape, a)
    if x.dtype.kind not in "fiu" or x.dtype.kind == "b":
        raise TypeError(f"{name}: expected a float array, got {x.dtype}")
    if x.dtype.kind in "iu" and x.size:
        raise TypeError(f"{name}: expected float pixels in [0, 1], got a {x.dtype} array "
                        f"(divide uint8 images by 255)")
    a = np.ascontiguousarray(x, dtype=np.float32)
    return Buffer(a.ctypes.data_as(F32P), a.shape, a)


def to_c(x, kind, name):
    """x (numpy array or nested sequence) → Buffer of int32 (kind "i") or
    float32 (kind "f")."""
    if _is_numpy(x):
        return _from_numpy(x, kind, name)
    if not _is_seq(x):
        if isinstance(x, (str, bytes)):
            raise TypeError(f"{name}: expected an array or nested list of "
                            f"{'ids' if kind == 'i' else 'numbers'}, got {type(x).__name__}")
        if hasattr(x, "__array__") and numpy() is not None:
            return _from_numpy(numpy().asarray(x), kind, name)
        raise TypeError(f"{name}: expected a numpy array or a nested list, "
                        f"got {type(x).__name__}")
    shape = _shape_of(x)
    flat = _flatten(x, shape, name) if shape and shape[0] else []
    if kind == "i":
        for v in flat:
            if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                raise TypeError(f"{name}: expected integer ids, got {type(v).__name__}")
        try:
            a = array.array("i", flat)
        except OverflowError:
            raise ValueError(f"{name}: ids outside the int32 range") from None
        ctype = ctypes.c_int32
        ptr_t = I32P
    else:
        for v in flat:
            if not isinstance(v, numbers.Real) or isinstance(v, bool):
                raise TypeError(f"{name}: expected numbers, got {type(v).__name__}")
        a = array.array("f", flat)
        ctype = ctypes.c_float
        ptr_t = F32P
    if len(a) == 0:
        a.append(0)  # a valid pointer for an empty array
        c = (ctype * 1).from_buffer(a)
    else:
        c = (ctype * len(a)).from_buffer(a)
    return Buffer(ctypes.cast(c, ptr_t), shape, (a, c))


def ids_2d(x, name, width=None):
    """Token ids as [batch, n] (a 1-D input is one row). width: required n."""
    b = to_c(x, "i", name)
    if len(b.shape) == 1:
        b.shape = (1, b.shape[0])
    elif len(b.shape) == 0 or (len(b.shape) == 2 and b.shape[0] == 0) or len(b.shape) > 2:
        if len(b.shape) == 2:
            raise ValueError(f"{name}: an empty batch")
        raise ValueError(f"{name}: expected ids of shape [batch, n] or [n], "
                         f"got shape {list(b.shape)}")
    if width is not None and b.shape[1] != width:
        raise ValueError(f"{name}: rows of {b.shape[1]} ids, expected {width}")
    return b


def images_4d(x, name, size):
    """Float images [batch, 3, size, size] (a 3-D input is one image)."""
    b = to_c(x, "f", name)
    if len(b.shape) == 3:
        b.shape = (1,) + tuple(b.shape)
    want = (3, size, size)
    if len(b.shape) != 4 or tuple(b.shape[1:]) != want or b.shape[0] == 0:
        raise ValueError(f"{name}: expected images of shape [batch, 3, {size}, {size}] "
                         f"(planar RGB), got shape {list(b.shape)}")
    return b


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------

class Out:
    """An output buffer the C library writes; .value() gives numpy or lists."""

    __slots__ = ("ptr", "shape", "_data", "_np")

    def __init__(self, kind, shape):
        self.shape = tuple(shape)
        n = math.prod(self.shape)
        np = numpy()
        self._np = np is not None
        if np is not None:
            self._data = np.zeros(self.shape, dtype=np.int32 if kind == "i" else np.float32)
            self.ptr = self._data.ctypes.data_as(I32P if kind == "i" else F32P)
        else:
            a = array.array("i" if kind == "i" else "f", bytes(4 * max(n, 1)))
            ctype = ctypes.c_int32 if kind == "i" else ctypes.c_float
            c = (ctype * len(a)).from_buffer(a)
            self._data = (a, c)
            self.ptr = ctypes.cast(c, I32P if kind == "i" else F32P)

    def value(self):
        if self._np:
            return self._data
        a = self._data[0]
        return nest(a, self.shape)

    def flat(self):
        """The values as a flat list (both paths)."""
        if self._np:
            return self._data.reshape(-1).tolist()
        return self._data[0][:math.prod(self.shape)].tolist()


def nest(flat, shape):
    """A flat sequence → nested lists of `shape` (C order)."""
    if len(shape) == 0:
        return flat[0]
    if len(shape) == 1:
        return list(flat[:shape[0]]) if not isinstance(flat, array.array) \
            else flat[:shape[0]].tolist()
    step = math.prod(shape[1:])
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def shape_of(x):
    """The shape of a numpy array or nested list (as a tuple)."""
    if _is_numpy(x):
        return tuple(x.shape)
    return tuple(_shape_of(x))
