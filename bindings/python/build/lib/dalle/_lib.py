"""Finding and loading libdalle, its C declarations, and :class:`DalleError`.

Nothing here touches the C library at import time: :func:`lib` loads it on
first use (so ``import dalle`` and ``python3 -m dalle.convert`` work on a
machine without libdalle).

Where the library is looked for, first hit wins:

1. ``DALLE_LIBRARY``: the path of the shared library itself (an error if it
   does not load: an explicit choice is never silently ignored);
2. ``DALLE_BUILD_DIR``: a meson build directory (``$DALLE_BUILD_DIR/lib/``);
3. the build tree of a source checkout: ``<repo>/build/lib/`` when this
   package runs from ``<repo>/bindings/python/dalle``;
4. the installed soname (``libdalle.so.1``, ``libdalle.1.dylib``,
   ``dalle.dll``) through the dynamic loader, then ``ctypes.util``.

The loaded library must have ABI major :data:`ABI_MAJOR`
(``dalle_version_number() // 10000``).

Functions of the C API that the loaded library lacks (an older libdalle)
are left undeclared; the Python calls that need them raise
:class:`DalleError` (status ``DALLE_ERR_UNSUPPORTED``) saying so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import sys
import threading
from ctypes import (CFUNCTYPE, byref, sizeof, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint64, c_void_p)

__all__ = ["DalleError", "Status", "lib", "library_path", "has", "require", "check",
           "ABI_MAJOR"]

ABI_MAJOR = 1


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class Status(enum.IntEnum):
    """The C library's ``dalle_status`` codes."""
    OK = 0
    INVALID_ARGUMENT = -1
    OUT_OF_MEMORY = -2
    IO = -3
    FORMAT = -4
    VERSION = -5
    CHECKSUM = -6
    NOT_FOUND = -7
    MISMATCH = -8
    UNSUPPORTED = -9
    ABORTED = -10
    BACKEND = -11
    TOO_LONG = -12
    NOT_IMPLEMENTED = -13


class DalleError(Exception):
    """A libdalle call failed.

    Attributes:
        status: the C status code (a :class:`Status` member when known, else
            the plain int), e.g. ``Status.IO`` (-3).
        code_name: its C name, e.g. ``"DALLE_ERR_IO"``.
        message: the library's message (``dalle_last_error()`` / the
            handle's last error): what failed and which file, tensor or
            argument was at fault. ``str(error)`` is this message.
    """

    def __init__(self, status, message=""):
        try:
            status = Status(status)
            code_name = "DALLE_OK" if status == 0 else "DALLE_ERR_" + status.name
        except ValueError:
            status = int(status)
            code_name = f"DALLE_ERR_{-status}" if status < 0 else str(status)
        self.status = status
        self.code_name = code_name
        self.message = message or code_name
        super().__init__(self.message)

    def __repr__(self):
        return f"DalleError({self.code_name}, {self.message!r})"


def _text(b) -> str:
    return b.decode("utf-8", "replace") if b else ""


def check(status, handle_error=None):
    """Raise :class:`DalleError` for a non-zero status.

    The message is the calling thread's ``dalle_last_error()`` (ctypes runs
    the C call in this same thread), else ``handle_error()`` (a handle's own
    last error), else ``dalle_strerror(status)``.
    """
    if status == 0:
        return
    L = lib()
    msg = _text(L.dalle_last_error())
    if not msg and handle_error is not None:
        msg = handle_error()
    if not msg:
        msg = _text(L.dalle_strerror(status))
    raise DalleError(status, msg)


# --------------------------------------------------------------------------
# C types
# --------------------------------------------------------------------------

DALLE_MAX_DIMS = 8


class CtxParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("n_threads", c_int), ("backend", c_int),
                ("device", c_int), ("max_batch", c_int)]


PROGRESS_FN = CFUNCTYPE(None, c_int64, c_int64, c_void_p)
ABORT_FN = CFUNCTYPE(c_int, c_void_p)
LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)


class SampleParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("seed", c_uint64), ("filter_thres", c_float),
                ("temperature", c_float), ("cond_scale", c_float),
                ("prime", POINTER(c_int32)), ("n_prime", c_int),
                ("progress", PROGRESS_FN), ("abort", ABORT_FN), ("user", c_void_p),
                ("first_image", c_uint64)]


class TensorInfo(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("ndim", c_int),
                ("dims", c_int64 * DALLE_MAX_DIMS), ("numel", c_int64),
                ("nbytes", c_uint64), ("stored_bytes", c_uint64), ("codec", c_int),
                ("alias_of", c_int), ("alias_offset", c_int64)]


class _Opaque(Structure):
    pass


class _Ctx(_Opaque):
    pass


class _ClipCtx(_Opaque):
    pass


class _Bundle(_Opaque):
    pass


class _Tokenizer(_Opaque):
    pass


CtxP = POINTER(_Ctx)
ClipCtxP = POINTER(_ClipCtx)
BundleP = POINTER(_Bundle)
TokenizerP = POINTER(_Tokenizer)

I32P = POINTER(c_int32)
F32P = POINTER(c_float)
I64P = POINTER(c_int64)

# name: (restype, argtypes). Every function of include/dalle/dalle.h that the
# binding calls. Those the loaded library lacks stay undeclared (see has()).
_SIGNATURES = {
    # version, errors, logging
    "dalle_version": (c_char_p, []),
    "dalle_version_number": (c_int, []),
    "dalle_strerror": (c_char_p, [c_int]),
    "dalle_last_error": (c_char_p, []),
    "dalle_set_log_callback": (None, [LOG_FN, c_void_p]),
    # bundles (read side)
    "dalle_bundle_open": (c_int, [c_char_p, POINTER(BundleP)]),
    "dalle_bundle_close": (None, [BundleP]),
    "dalle_bundle_kind": (c_char_p, [BundleP]),
    "dalle_bundle_version_minor": (c_int, [BundleP]),
    "dalle_bundle_n_tensors": (c_int, [BundleP]),
    "dalle_bundle_tensor_info": (c_int, [BundleP, c_int, POINTER(TensorInfo)]),
    "dalle_bundle_find_tensor": (c_int, [BundleP, c_char_p]),
    "dalle_bundle_read_tensor": (c_int, [BundleP, c_int, c_void_p, c_size_t]),
    "dalle_bundle_verify": (c_int, [BundleP]),
    "dalle_bundle_n_meta": (c_int, [BundleP]),
    "dalle_bundle_meta_info": (c_int, [BundleP, c_int, POINTER(c_char_p), POINTER(c_int),
                                       I64P]),
    "dalle_bundle_meta_i64": (c_int, [BundleP, c_char_p, I64P]),
    "dalle_bundle_meta_f64": (c_int, [BundleP, c_char_p, POINTER(c_double)]),
    "dalle_bundle_meta_str": (c_int, [BundleP, c_char_p, POINTER(c_char_p)]),
    "dalle_bundle_meta_i64_array": (c_int, [BundleP, c_char_p, I64P, c_int64, I64P]),
    "dalle_bundle_meta_f64_array": (c_int, [BundleP, c_char_p, POINTER(c_double), c_int64,
                                            I64P]),
    "dalle_bundle_meta_str_array": (c_int, [BundleP, c_char_p, POINTER(c_char_p), c_int64,
                                            I64P]),
    # DALL-E / VAE contexts
    "dalle_ctx_params_init": (None, [POINTER(CtxParams), c_size_t]),
    "dalle_ctx_create": (c_int, [c_char_p, POINTER(CtxParams), POINTER(CtxP)]),
    "dalle_ctx_free": (None, [CtxP]),
    "dalle_ctx_last_error": (c_char_p, [CtxP]),
    "dalle_ctx_bundle": (BundleP, [CtxP]),
    "dalle_text_seq_len": (c_int, [CtxP]),
    "dalle_num_text_tokens": (c_int, [CtxP]),
    "dalle_image_seq_len": (c_int, [CtxP]),
    "dalle_num_image_tokens": (c_int, [CtxP]),
    "dalle_image_size": (c_int, [CtxP]),
    "dalle_total_tokens": (c_int, [CtxP]),
    "dalle_tokenize": (c_int, [CtxP, c_char_p, I32P, c_int, c_int]),
    "dalle_sample_params_init": (None, [POINTER(SampleParams), c_size_t]),
    "dalle_sample": (c_int, [CtxP, I32P, c_int, POINTER(SampleParams), I32P]),
    "dalle_logits": (c_int, [CtxP, I32P, I32P, c_int, c_int, c_float, F32P]),
    "dalle_logits_incremental": (c_int, [CtxP, I32P, I32P, c_int, c_int, c_float, F32P]),
    "dalle_logits_rows": (c_int, [CtxP, c_int]),
    "dalle_decode": (c_int, [CtxP, I32P, c_int, F32P]),
    "dalle_encode": (c_int, [CtxP, F32P, c_int, I32P]),
    "dalle_generate_text": (c_int, [CtxP, I32P, c_int, POINTER(SampleParams), I32P]),
    # image files
    "dalle_write_png": (c_int, [c_char_p, F32P, c_int, c_int, c_int]),
    "dalle_read_image": (c_int, [c_char_p, c_int, F32P]),
    # tokenizer
    "dalle_tokenizer_create": (c_int, [c_char_p, POINTER(TokenizerP)]),
    "dalle_tokenizer_free": (None, [TokenizerP]),
    "dalle_tokenizer_vocab_size": (c_int, [TokenizerP]),
    "dalle_tokenizer_encode": (c_int, [TokenizerP, c_char_p, I32P, c_int, POINTER(c_int)]),
    "dalle_tokenizer_decode": (c_int, [TokenizerP, I32P, c_int, c_void_p, c_size_t,
                                       POINTER(c_size_t)]),
    "dalle_tokenizer_tokenize": (c_int, [TokenizerP, c_char_p, I32P, c_int, c_int]),
    "dalle_tokenizer_tokenize_clip": (c_int, [TokenizerP, c_char_p, I32P, c_int, c_int]),
    # CLIP
    "clip_ctx_create": (c_int, [c_char_p, POINTER(CtxParams), POINTER(ClipCtxP)]),
    "clip_ctx_free": (None, [ClipCtxP]),
    "clip_ctx_last_error": (c_char_p, [ClipCtxP]),
    "clip_text_seq_len": (c_int, [ClipCtxP]),
    "clip_image_size": (c_int, [ClipCtxP]),
    "clip_score": (c_int, [ClipCtxP, I32P, F32P, c_int, F32P]),
    "clip_ctx_bundle": (BundleP, [ClipCtxP]),
    "clip_num_text_tokens": (c_int, [ClipCtxP]),
    "clip_embed_dim": (c_int, [ClipCtxP]),
    "clip_score_masked": (c_int, [ClipCtxP, I32P, c_void_p, F32P, c_int, F32P]),
    "clip_encode_image": (c_int, [ClipCtxP, F32P, c_int, F32P]),
    "clip_encode_text": (c_int, [ClipCtxP, I32P, c_int, F32P]),
    "clip_logits_per_image": (c_int, [ClipCtxP, F32P, c_int, I32P, c_int, F32P]),
    "clip_preprocess": (c_int, [ClipCtxP, c_void_p, c_int, c_int, F32P]),
    "clip_rank": (c_int, [ClipCtxP, I32P, F32P, c_int, F32P, POINTER(c_int)]),
}

_LIB = None
_LIB_PATH = None
_MISSING = set()
_DECLARED = set()
_LOCK = threading.Lock()


def _candidates():
    """(path or soname, explicit) in search order."""
    out = []
    env = os.environ.get("DALLE_LIBRARY")
    if env:
        return [(env, True)]
    if sys.platform == "darwin":
        names = ["libdalle.1.dylib", "libdalle.dylib"]
    elif sys.platform == "win32":
        names = ["dalle.dll", "libdalle.dll", "libdalle-1.dll"]
    else:
        names = ["libdalle.so.1"]
    build_dirs = []
    if os.environ.get("DALLE_BUILD_DIR"):
        build_dirs.append(os.environ["DALLE_BUILD_DIR"])
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.isfile(os.path.join(repo, "include", "dalle", "dalle.h")):
        build_dirs.append(os.path.join(repo, "build"))
    for d in build_dirs:
        for n in names:
            p = os.path.join(d, "lib", n)
            if os.path.exists(p):
                out.append((p, False))
    out += [(n, False) for n in names]
    found = ctypes.util.find_library("dalle")
    if found:
        out.append((found, False))
    return out


def _load():
    global _LIB, _LIB_PATH
    tried = []
    for cand, explicit in _candidates():
        try:
            L = ctypes.CDLL(cand)
        except OSError as e:
            if explicit:
                raise DalleError(Status.IO, f"DALLE_LIBRARY={cand}: cannot load it: {e}") from None
            tried.append(f"{cand} ({e})")
            continue
        if not hasattr(L, "dalle_version_number"):
            if explicit:
                raise DalleError(Status.FORMAT, f"DALLE_LIBRARY={cand}: not libdalle "
                                                f"(no dalle_version_number)")
            tried.append(f"{cand} (not libdalle)")
            continue
        L.dalle_version_number.restype = c_int
        L.dalle_version_number.argtypes = []
        number = L.dalle_version_number()
        if number // 10000 != ABI_MAJOR:
            msg = (f"{cand}: libdalle ABI {number // 10000} "
                   f"(version number {number}); this binding needs ABI {ABI_MAJOR}")
            if explicit:
                raise DalleError(Status.VERSION, msg)
            tried.append(msg)
            continue
        for name, (restype, argtypes) in _SIGNATURES.items():
            if hasattr(L, name):
                f = getattr(L, name)
                f.restype = restype
                f.argtypes = argtypes
            else:
                _MISSING.add(name)
        _LIB, _LIB_PATH = L, cand
        return L
    raise DalleError(Status.IO, "libdalle not found: set DALLE_LIBRARY to the path of "
                                "libdalle.so.1, or DALLE_BUILD_DIR to a meson build directory, "
                                "or install libdalle; tried: " + "; ".join(tried))


def lib():
    """The loaded library (a ``ctypes.CDLL``), loading it on first use."""
    if _LIB is not None:
        return _LIB
    with _LOCK:
        if _LIB is not None:
            return _LIB
        return _load()


def library_path() -> str:
    """The path or soname libdalle was loaded from (loads it)."""
    lib()
    return _LIB_PATH


def has(name: str) -> bool:
    """Whether the loaded libdalle exports the C function `name`."""
    return hasattr(lib(), name)


def require(name: str, what: str = None):
    """The C function `name`, or DalleError(UNSUPPORTED) when the loaded
    libdalle lacks it (an older version)."""
    L = lib()
    if not hasattr(L, name):
        raise DalleError(Status.UNSUPPORTED,
                         f"{what or name}: not available in this libdalle ({version()}, "
                         f"{_LIB_PATH}): it has no {name}()")
    if name not in _SIGNATURES and name not in _DECLARED:
        raise DalleError(Status.UNSUPPORTED,
                         f"{what or name}: this Python binding does not know {name}() yet")
    return getattr(L, name)


def declare(name: str, restype, argtypes) -> bool:
    """Declare an optional function; returns whether the library has it."""
    L = lib()
    if not hasattr(L, name):
        return False
    f = getattr(L, name)
    f.restype = restype
    f.argtypes = argtypes
    _DECLARED.add(name)
    return True


def version() -> str:
    """The loaded library's version string, e.g. "1.0.0"."""
    L = lib()
    return _text(L.dalle_version()) if hasattr(L, "dalle_version") else "?"


def strerror(status: int) -> str:
    return _text(lib().dalle_strerror(status))


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------

_log_ref = None  # keeps the ctypes callback alive while C holds it

LOG_LEVELS = {0: "error", 1: "warn", 2: "info", 3: "debug"}


def set_log_callback(fn):
    """Send the library's diagnostics to ``fn(level, message)`` (level is
    "error", "warn", "info" or "debug"); None discards them (the default).

    Process-wide. The callback may be called from any thread, including the
    library's worker threads; exceptions it raises are printed and ignored.
    """
    global _log_ref
    L = lib()
    if fn is None:
        L.dalle_set_log_callback(LOG_FN(), None)
        _log_ref = None
        return
    if not callable(fn):
        raise TypeError("set_log_callback: expected a callable or None")

    def trampoline(level, message, user):
        try:
            fn(LOG_LEVELS.get(level, str(level)), _text(message))
        except Exception:  # never let an exception unwind into C
            import traceback
            traceback.print_exc()

    ref = LOG_FN(trampoline)
    L.dalle_set_log_callback(ref, None)
    _log_ref = ref


# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------

class Handle:
    """Base of the classes that own one C handle.

    The handle is private (``_h``); it is released by :meth:`close`, by
    leaving a ``with`` block, or (as a fallback) when the object is garbage
    collected. close() twice is harmless; any other call after close()
    raises DalleError.

    Thread safety: calls on one object are serialised by a lock (the C
    library allows one thread per handle at a time), so an object may be
    shared between threads; the GIL is released during C calls, so separate
    objects compute in parallel. A callback (progress, abort) must not call
    back into the object that is running it: that raises DalleError.
    """

    _what = "handle"

    def __init__(self):
        self._h = None
        self._lock = threading.Lock()
        self._owner = None

    # subclasses: the C function that frees the handle, and its last error
    def _free(self, h):  # pragma: no cover - overridden
        raise NotImplementedError

    def _handle_error(self, h):
        return ""

    def _use(self):
        return _Use(self)

    def _check(self, status, h):
        if status:
            check(status, lambda: self._handle_error(h))

    @property
    def closed(self) -> bool:
        return self._h is None

    def close(self):
        """Release the C handle now (idempotent)."""
        if self._owner == threading.get_ident():
            raise DalleError(Status.INVALID_ARGUMENT,
                             f"{self._what}.close(): called from inside its own callback")
        with self._lock:
            h, self._h = self._h, None
            if h is not None:
                self._free(h)

    def __enter__(self):
        if self._h is None:
            raise DalleError(Status.INVALID_ARGUMENT, f"{self._what} is closed")
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            self._h = None
            try:
                self._free(h)
            except Exception:  # interpreter shutdown: the library may be gone
                pass


class _Use:
    __slots__ = ("o",)

    def __init__(self, o):
        self.o = o

    def __enter__(self):
        o = self.o
        if o._owner == threading.get_ident():
            raise DalleError(Status.INVALID_ARGUMENT,
                             f"{o._what}: called from inside its own callback "
                             f"(progress/abort); a handle runs one call at a time")
        o._lock.acquire()
        if o._h is None:
            o._lock.release()
            raise DalleError(Status.INVALID_ARGUMENT, f"{o._what} is closed")
        o._owner = threading.get_ident()
        return o._h

    def __exit__(self, *exc):
        self.o._owner = None
        self.o._lock.release()
        return False


def sample_params():
    """A dalle_sample_params holding the library's defaults."""
    p = SampleParams()
    lib().dalle_sample_params_init(byref(p), sizeof(p))
    return p


def ctx_params(n_threads=0, backend="cpu", device=0, max_batch=8):
    """A dalle_ctx_params from the library's defaults plus these values."""
    backends = {"cpu": 0, "cuda": 1, "auto": 2}
    if isinstance(backend, str):
        if backend.lower() not in backends:
            raise ValueError(f"backend={backend!r}: expected 'cpu', 'cuda' or 'auto'")
        backend = backends[backend.lower()]
    for name, v in (("n_threads", n_threads), ("device", device), ("max_batch", max_batch),
                    ("backend", backend)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if not -(1 << 31) <= v < (1 << 31):
            raise ValueError(f"{name} = {v}: outside the C int range")
    p = CtxParams()
    lib().dalle_ctx_params_init(byref(p), sizeof(p))
    p.n_threads, p.backend, p.device, p.max_batch = n_threads, backend, device, max_batch
    return p


def fspath(path, what="path") -> bytes:
    """A file path as the bytes C wants (str, bytes or os.PathLike)."""
    try:
        b = os.fsencode(path)
    except TypeError:
        raise TypeError(f"{what}: expected a str, bytes or os.PathLike path, "
                        f"got {type(path).__name__}") from None
    if b"\0" in b:
        raise ValueError(f"{what}: a NUL character in the path")
    return b
