"""Read PyTorch checkpoint files without PyTorch (standard library only).

Three container formats are understood:

* ``torch.save`` zip archives (PyTorch >= 1.6): ``<prefix>/data.pkl`` is a
  pickle whose tensors refer, through persistent ids
  ``('storage', storage_type, key, location, numel)``, to the raw storage
  bytes in ``<prefix>/data/<key>``.
* TorchScript archives (``torch.jit.save``; OpenAI CLIP's release files): the
  same zip layout plus ``constants.pkl`` and ``code/``. ``data.pkl`` holds the
  module tree as ``__torch__.*`` objects; :func:`torchscript_state_dict`
  recovers ``{dotted name: tensor}`` from it, using the ``__parameters__`` /
  ``__buffers__`` lists in ``code/`` to tell parameters from other attributes.
* the legacy (pre-1.6) stream: magic number, protocol version, sys info, the
  pickled object, the list of storage keys, then each storage as an 8-byte
  element count followed by its bytes.

Unpickling is restricted: :class:`_Unpickler.find_class` hands out only a few
harmless callables (``OrderedDict``, ``set``, tensor rebuilders that build
:class:`Tensor` records). Every other class becomes a :class:`Stub` that just
records its name, constructor arguments and state, so whole pickled modules
(dall_e's Encoder, nn.Sequential, attrs classes, Lightning checkpoints) load
as inert trees and nothing from the file is ever executed.

Storage bytes are read lazily from the file, so opening a large checkpoint is
cheap; the byte order is assumed little-endian (every PyTorch release wrote
little-endian files on the platforms it shipped for; a zip's ``byteorder``
record saying ``big`` is refused).
"""

from __future__ import annotations

import array
import collections
import io
import os
import pickle
import pickletools
import re
import struct
import sys
import warnings
import zipfile
import zlib

__all__ = [
    "TorchFileError", "Storage", "Tensor", "Stub", "TorchFile", "load",
    "module_state_dict", "torchscript_state_dict", "torchscript_modules",
    "DTYPE_ITEMSIZE", "unpack",
]


class TorchFileError(Exception):
    """A file that is not a readable PyTorch checkpoint."""


# Storage class names (as pickled: GLOBAL 'torch FloatStorage') -> dtype.
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

DTYPE_ITEMSIZE = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}

# array/memoryview formats of the same width, used to gather strided
# elements without interpreting them.
_WIDTH_FORMAT = {1: "B", 2: "H", 4: "I", 8: "Q"}


class _StorageType:
    """What ``torch.FloatStorage`` etc. unpickle to: a dtype marker."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    """One storage of a checkpoint: ``numel`` elements of ``dtype``.

    Tensors sharing a storage hold the same Storage object, which is how the
    converter finds tied weights. The bytes are loaded on demand.
    """

    def __init__(self, key, dtype, numel, location, loader):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.location = location
        self._loader = loader
        self._data = None

    @property
    def itemsize(self) -> int:
        return DTYPE_ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    def read(self) -> bytes:
        """The storage's bytes (read from the file, kept until release())."""
        if self._data is None:
            data = self._loader()
            if len(data) < self.nbytes:
                raise TorchFileError(
                    f"storage {self.key!r}: {len(data)} bytes, expected {self.nbytes}")
            self._data = data
        return self._data

    def release(self) -> None:
        """Forget the cached bytes (the converter streams large files)."""
        self._data = None

    def __repr__(self):
        return f"Storage(key={self.key!r}, dtype={self.dtype}, numel={self.numel})"


class Tensor:
    """A strided view into a :class:`Storage` (what _rebuild_tensor_v2 makes)."""

    def __init__(self, storage: Storage, offset: int, shape, stride, requires_grad=False):
        self.storage = storage
        self.offset = int(offset)
        self.shape = tuple(int(d) for d in shape)
        self.stride = tuple(int(s) for s in stride)
        self.requires_grad = bool(requires_grad)
        self.is_parameter = False
        if len(self.shape) != len(self.stride):
            raise TorchFileError(f"tensor of shape {self.shape} has stride {self.stride}")
        if self.offset < 0 or any(d < 0 for d in self.shape) or any(s < 0 for s in self.stride):
            raise TorchFileError(f"tensor view (offset {self.offset}, shape {self.shape}, stride "
                                 f"{self.stride}) has a negative offset, size or stride")
        if self.numel and self.offset + self._max_index() >= storage.numel:
            raise TorchFileError(
                f"tensor view (offset {self.offset}, shape {self.shape}, stride {self.stride}) "
                f"exceeds its storage {storage.key!r} of {storage.numel} elements")

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    def _max_index(self) -> int:
        return sum((d - 1) * s for d, s in zip(self.shape, self.stride) if d > 0)

    def is_contiguous(self) -> bool:
        """C-contiguous, with PyTorch's rule that size-1 dims' strides don't matter."""
        expected = 1
        for d, s in zip(reversed(self.shape), reversed(self.stride)):
            if d != 1 and s != expected:
                return False
            expected *= d
        return True

    def tobytes(self) -> bytes:
        """The elements in C order, materialising non-contiguous views."""
        data = self.storage.read()
        size = self.itemsize
        if self.is_contiguous():
            start = self.offset * size
            return bytes(data[start:start + self.nbytes])
        if self.numel == 0:
            return b""
        # Gather strided elements: whole rows at a time along the last axis
        # (memoryview slicing with a step), looping over the outer indices.
        # whole elements only: a storage's file member may be longer than it
        elems = memoryview(data)[:len(data) // size * size].cast(_WIDTH_FORMAT[size])
        out = bytearray()
        *outer, last = self.shape or (1,)
        *outer_stride, last_stride = self.stride or (1,)
        index = [0] * len(outer)
        while True:
            base = self.offset + sum(i * s for i, s in zip(index, outer_stride))
            if last_stride > 0:
                out += elems[base:base + (last - 1) * last_stride + 1:last_stride].tobytes()
            else:  # stride 0 (expanded) or negative: element by element
                for j in range(last):
                    out += elems[base + j * last_stride:base + j * last_stride + 1].tobytes()
            # odometer increment over the outer dims
            k = len(outer) - 1
            while k >= 0:
                index[k] += 1
                if index[k] < outer[k]:
                    break
                index[k] = 0
                k -= 1
            if k < 0:
                break
        return bytes(out)

    def values(self) -> list:
        """The elements in C order as Python numbers (tests, small tensors)."""
        return unpack(self.dtype, self.tobytes())

    def __repr__(self):
        return (f"Tensor(dtype={self.dtype}, shape={list(self.shape)}, "
                f"storage={self.storage.key!r}, offset={self.offset})")


def unpack(dtype: str, data: bytes) -> list:
    """Decode little-endian bytes of ``dtype`` into a list of Python numbers."""
    if dtype == "bfloat16":
        # bf16 is the upper half of an f32: widen by prepending two zero bytes.
        halves = memoryview(data).cast("H")
        widened = array.array("I", (h << 16 for h in halves))
        return list(array.array("f", widened.tobytes()))
    fmt = {"float32": "f", "float16": "e", "float64": "d", "int64": "q", "int32": "i",
           "int16": "h", "int8": "b", "uint8": "B", "bool": "?"}[dtype]
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt}", data))


class Stub:
    """An instance of a class the unpickler refused to import.

    ``module``/``name`` are the pickled class's, ``args`` the arguments it
    was constructed with (NEWOBJ/REDUCE) and ``state`` what BUILD gave it
    (usually the instance ``__dict__``). Nothing of the class's code runs.
    """

    module = "?"
    name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.items = []
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        # (dict, slots) pairs come from classes with __slots__.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.state = state

    # list/dict subclasses pickle their items with APPENDS/SETITEMS
    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    @classmethod
    def qualname(cls) -> str:
        return f"{cls.module}.{cls.name}"

    def get(self, key, default=None):
        """An attribute from the recorded state (a dict), or ``default``."""
        if isinstance(self.state, dict):
            return self.state.get(key, default)
        return default

    def __repr__(self):
        return f"<stub {self.qualname()}>"


_stub_classes: dict = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _stub_classes:
        _stub_classes[key] = type(name, (Stub,), {"module": module, "name": name})
    return _stub_classes[key]


# ---------------------------------------------------------------- rebuilders
# These replace the torch functions named in the pickle. They only build
# records; their signatures follow torch/_utils.py.

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, Storage):
        raise TorchFileError(f"tensor rebuilt from {storage!r}, not a storage")
    return Tensor(storage, storage_offset, size, stride, requires_grad)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if isinstance(data, Tensor):
        data.requires_grad = bool(requires_grad)
        data.is_parameter = True
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # Tensor subclasses: the payload is func(*args); the subclass is dropped.
    return func(*args)


def _unsupported(what):
    def fail(*args, **kwargs):
        raise TorchFileError(f"{what} tensors are not supported")
    return fail


def _bytes_from_latin1(s, encoding="latin1"):
    # Protocol-2 pickles write bytes as _codecs.encode(str, 'latin1').
    if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
        raise TorchFileError(f"refusing _codecs.encode({type(s).__name__}, {encoding!r})")
    return s.encode("latin1")


def _reconstructor(cls, base, state=None):
    # copyreg._reconstructor(cls, object, None): protocol 0/1 object creation.
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls.__new__(cls)
    raise TorchFileError(f"refusing copyreg._reconstructor for {cls!r}")


def _newobj(cls, *args):
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls.__new__(cls, *args)
    raise TorchFileError(f"refusing copyreg.__newobj__ for {cls!r}")


def _bytearray(*args):
    # Protocol-2 pickles write a bytearray as bytearray(str, 'latin-1');
    # bytearray(n) would let a few bytes of a file allocate n.
    if args and not isinstance(args[0], (str, bytes)):
        raise TorchFileError(f"refusing bytearray({type(args[0]).__name__}, ...)")
    return bytearray(*args)


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "object"): object,
    ("_codecs", "encode"): _bytes_from_latin1,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): _newobj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._utils", "_rebuild_qtensor"): _unsupported("quantized"),
    ("torch._utils", "_rebuild_sparse_tensor"): _unsupported("sparse"),
    ("torch._utils", "_rebuild_sparse_csr_tensor"): _unsupported("sparse"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): _unsupported("meta"),
    ("torch._utils", "_rebuild_wrapper_subclass"): _unsupported("wrapper-subclass"),
    ("torch", "Size"): tuple,
}
# Python 2 pickles name the builtins module __builtin__.
_SAFE_GLOBALS.update({("__builtin__", n): f for (m, n), f in list(_SAFE_GLOBALS.items())
                      if m == "builtins"})


class _Unpickler(pickle.Unpickler):
    """pickle.Unpickler that never imports anything from the file."""

    def __init__(self, file, persistent_load):
        super().__init__(file, encoding="latin1")
        self._file = file
        self._persistent = persistent_load

    def load(self):
        _check_memo(self._file)
        return super().load()

    def find_class(self, module, name):
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in ("device", "dtype", "layout", "memory_format"):
            return str
        return _stub_class(module, name)

    def persistent_load(self, pid):
        return self._persistent(pid)


def _check_memo(file) -> None:
    """Refuse a pickle that stores into a memo slot beyond the objects it has
    made: the C unpickler grows its memo table to the index, so one PUT of
    index 10^9 in a mutated file allocates gigabytes. A pickler numbers its
    memo 0, 1, 2, ... (pickletools reads the opcodes without building them;
    the file is left where it was)."""
    start = file.tell()
    made = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickletools on a STRING of bad escapes
            for op, arg, pos in pickletools.genops(file):
                if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                    if op.name != "MEMOIZE" and not 0 <= int(arg) <= made:
                        raise TorchFileError(f"pickle memo index {arg} at byte {pos} is beyond "
                                             f"the {made} objects stored before it")
                    made += 1
    finally:
        file.seek(start)


def _storage_dtype(storage_type, where) -> str:
    if isinstance(storage_type, _StorageType):
        return storage_type.dtype
    if isinstance(storage_type, str) and storage_type in STORAGE_DTYPES:
        return STORAGE_DTYPES[storage_type]
    raise TorchFileError(f"{where}: unsupported storage type {storage_type!r}")


# ---------------------------------------------------------------- containers

class TorchFile:
    """A loaded checkpoint.

    ``obj`` is the unpickled top-level object; ``format`` is ``"zip"``,
    ``"torchscript"`` or ``"legacy"``. For TorchScript archives ``obj`` is the
    root module (a :class:`Stub` of a ``__torch__.*`` class); use
    :func:`torchscript_state_dict` to get its weights.
    """

    def __init__(self, path, fmt, obj, code=None, constants=None):
        self.path = path
        self.format = fmt
        self.obj = obj
        self.code = code or {}          # TorchScript: file name -> source text
        self.constants = constants      # TorchScript: the constants.pkl tuple


# What malformed archives and pickles surface as: zipfile's own errors (a
# bad crc, a bad header, an unknown compression method or an encrypted
# member), the unpickler's, and what a pickle's values do to the code that
# reads them (a length beyond the file can even be a MemoryError).
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, struct.error, zipfile.BadZipFile,
              zlib.error, NotImplementedError, RuntimeError, MemoryError, OverflowError,
              TypeError, AttributeError, KeyError, IndexError)


def printable(text: str) -> str:
    """text with its control and other unprintable characters escaped, so
    that a file's bytes quoted in a message keep it on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _describe(e: BaseException, limit: int = 200) -> str:
    """An exception as one printable line of at most ``limit`` characters."""
    text = printable(f"{type(e).__name__}: {e}")
    return text if len(text) <= limit else text[:limit - 3] + "..."


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def load(path) -> TorchFile:
    """Open a PyTorch file of any supported format (see the module docs)."""
    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            return _load_legacy(path)
    except TorchFileError as e:
        raise TorchFileError(f"{path}: {e}") from None
    except _MALFORMED as e:
        raise TorchFileError(f"{path}: not a readable PyTorch file ({_describe(e)})") from None
    raise TorchFileError(f"{path}: not a PyTorch file (neither a zip archive nor a legacy pickle)")


def _load_zip(path) -> TorchFile:
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkl and "data.pkl" in names:
        pkl = ["data.pkl"]
    if len(pkl) != 1:
        raise TorchFileError("zip archive without exactly one <prefix>/data.pkl")
    prefix = pkl[0][: -len("data.pkl")]
    names_set = set(names)
    if prefix + "byteorder" in names_set and zf.read(prefix + "byteorder").strip() != b"little":
        raise TorchFileError("big-endian checkpoints are not supported")

    storages: dict = {}

    def storage_loader(member):
        def read():
            # read when the converter needs it: a damaged member is found then
            try:
                return zf.read(member)
            except _MALFORMED as e:
                raise TorchFileError(f"{path}: {member}: cannot read the storage "
                                     f"({_describe(e)})") from None
        return read

    def make_persistent_load(folders):
        def persistent_load(pid):
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 5):
                raise TorchFileError(f"unexpected persistent id {pid!r}")
            _, storage_type, key, location, numel = pid[:5]
            key = str(key)
            for folder in folders:
                member = f"{prefix}{folder}{key}"
                if member in names_set:
                    break
            else:
                raise TorchFileError(f"storage {key!r} missing from the archive")
            # Identity is the archive member: TorchScript's constants/ and
            # data/ folders number their storages independently.
            if member not in storages:
                dtype = _storage_dtype(storage_type, f"storage {key}")
                storages[member] = Storage(member[len(prefix):], dtype, int(numel),
                                           str(location), storage_loader(member))
            return storages[member]
        return persistent_load

    is_script = (prefix + "constants.pkl") in names_set or any(
        n.startswith(prefix + "code/") for n in names)
    obj = _Unpickler(io.BytesIO(zf.read(pkl[0])),
                     make_persistent_load(["data/", ".data/", "constants/"])).load()
    if not is_script:
        return TorchFile(path, "zip", obj)
    constants = None
    if prefix + "constants.pkl" in names_set:
        constants = _Unpickler(io.BytesIO(zf.read(prefix + "constants.pkl")),
                               make_persistent_load(["constants/", ".data/", "data/"])).load()
    code = {n[len(prefix + "code/"):]: zf.read(n).decode("utf-8", "replace")
            for n in names if n.startswith(prefix + "code/") and n.endswith(".py")}
    return TorchFile(path, "torchscript", obj, code, constants)


def _load_legacy(path) -> TorchFile:
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)

    def plain_load():
        return _Unpickler(stream, _no_persistent).load()

    if plain_load() != _LEGACY_MAGIC:
        raise TorchFileError("legacy stream with a wrong magic number")
    protocol = plain_load()
    if protocol != _LEGACY_PROTOCOL:
        raise TorchFileError(f"legacy stream of protocol {protocol!r} (only 1001 is known)")
    sys_info = plain_load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise TorchFileError("big-endian checkpoints are not supported")

    storages: dict = {}
    views: list = []  # (view Storage, root key, element offset)

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            if isinstance(pid, tuple) and pid and pid[0] == "module":
                return _stub_class("legacy_module_source", str(pid[1]))
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        _, storage_type, root_key, location, numel, view_metadata = (tuple(pid) + (None,))[:6]
        root_key = str(root_key)
        dtype = _storage_dtype(storage_type, f"storage {root_key}")
        if root_key not in storages:
            storages[root_key] = Storage(root_key, dtype, int(numel), str(location), None)
        root = storages[root_key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        view = Storage(str(view_key), dtype, int(view_size), str(location), None)
        views.append((view, root, int(offset)))
        return view

    obj = _Unpickler(stream, persistent_load).load()
    keys = plain_load()
    pos = stream.tell()
    for key in keys:
        key = str(key)
        if key not in storages:
            raise TorchFileError(f"legacy stream lists unknown storage {key!r}")
        st = storages[key]
        (count,) = struct.unpack_from("<q", data, pos)
        pos += 8
        size = count * st.itemsize
        if count != st.numel or pos + size > len(data):
            raise TorchFileError(f"legacy storage {key!r} truncated or of the wrong size")
        chunk = memoryview(data)[pos:pos + size]
        st._loader = (lambda c=chunk: bytes(c))
        pos += size
    missing = [key for key, st in storages.items() if st._loader is None]
    if missing:
        raise TorchFileError(f"legacy stream: storage {missing[0]!r} is used but its data is "
                             "not in the file")
    for view, root, offset in views:
        view._loader = (lambda r=root, o=offset, v=view:
                        r.read()[o * r.itemsize:(o + v.numel) * r.itemsize])
    return TorchFile(path, "legacy", obj)


def _no_persistent(pid):
    raise TorchFileError(f"unexpected persistent id {pid!r}")


# ---------------------------------------------------------------- module trees

def module_state_dict(module, prefix: str = "") -> "collections.OrderedDict[str, Tensor]":
    """The ``state_dict()`` of a pickled ``nn.Module`` (a :class:`Stub`).

    Follows nn.Module.state_dict: parameters, then persistent buffers, then
    submodules recursively; ``None`` entries (e.g. ``bias=False``) are skipped.
    """
    out = collections.OrderedDict()
    if not isinstance(module, Stub) or not isinstance(module.state, dict):
        raise TorchFileError(f"{prefix or 'root'}: {module!r} is not a pickled nn.Module")
    state = module.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for kind in ("_parameters", "_buffers"):
        for name, t in (state.get(kind) or {}).items():
            if t is None or (kind == "_buffers" and name in skip):
                continue
            if not isinstance(t, Tensor):
                raise TorchFileError(f"{prefix}{name}: {kind[1:-1]} is not a tensor ({t!r})")
            out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


_CLASS_RE = re.compile(r"^class (\w+)\(", re.M)
_LIST_RE = re.compile(r"^\s+__(parameters|buffers)__ = \[(.*?)\]", re.M | re.S)


def _script_class_members(tf: TorchFile, stub: Stub):
    """(parameters, buffers) names declared by a TorchScript class, or None."""
    path = stub.module.replace(".", "/") + ".py"
    source = tf.code.get(path)
    if source is None:
        return None
    starts = [(m.start(), m.group(1)) for m in _CLASS_RE.finditer(source)]
    for i, (start, cname) in enumerate(starts):
        if cname != stub.name:
            continue
        end = starts[i + 1][0] if i + 1 < len(starts) else len(source)
        members = {"parameters": [], "buffers": []}
        for m in _LIST_RE.finditer(source, start, end):
            members[m.group(1)] = re.findall(r'"([^"]*)"', m.group(2))
        return members["parameters"], members["buffers"]
    return None


def torchscript_state_dict(tf: TorchFile) -> "collections.OrderedDict[str, Tensor]":
    """The parameters and buffers of a TorchScript module tree, by dotted name.

    A module is a ``__torch__.*`` object whose state is its attribute dict.
    Parameters and buffers are the attributes its class's code declares in
    ``__parameters__`` / ``__buffers__``; when the code is missing, every
    tensor attribute counts. Submodules are attributes holding other
    ``__torch__`` objects.
    """
    out = collections.OrderedDict()

    def walk(obj, prefix):
        attrs = obj.state if isinstance(obj.state, dict) else {}
        members = _script_class_members(tf, obj)
        if members is None:
            wanted = [k for k, v in attrs.items() if isinstance(v, Tensor)]
        else:
            wanted = [n for n in members[0] + members[1] if n in attrs]
        for name in wanted:
            t = attrs[name]
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TorchFileError(f"{prefix}{name}: declared a tensor but holds {t!r}")
            out[prefix + name] = t
        for name, v in attrs.items():
            if isinstance(v, Stub) and v.module.startswith("__torch__"):
                walk(v, f"{prefix}{name}.")

    root = tf.obj
    if not (isinstance(root, Stub) and root.module.startswith("__torch__")):
        raise TorchFileError("TorchScript archive whose data.pkl is not a __torch__ module")
    walk(root, "")
    return out


def torchscript_modules(tf: TorchFile):
    """Yield (dotted path, module stub) for every module of a TorchScript tree."""
    def walk(obj, prefix):
        yield prefix.rstrip("."), obj
        attrs = obj.state if isinstance(obj.state, dict) else {}
        for name, v in attrs.items():
            if isinstance(v, Stub) and v.module.startswith("__torch__"):
                yield from walk(v, f"{prefix}{name}.")
    yield from walk(tf.obj, "")


if __name__ == "__main__":  # a quick look inside a file: python3 -m dalle.torchfile FILE
    for p in sys.argv[1:]:
        tf = load(p)
        print(p, tf.format, type(tf.obj).__name__)
