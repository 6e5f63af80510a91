"""The synthetic world, its judge and the BPE learner (``dalle_synth_*``,
``dalle_bpe_*`` of include/dalle/train.h; docs/synthetic-world.md).

    import dalle
    caption, pixels = dalle.synth_sample(seed=0, index=3, size=64)
    v = dalle.judge(pixels, caption)            # reads the picture back
    assert v.passed                             # every stated attribute right
    world = dalle.Synth(seed=0, split="heldout", colors=8, shapes=4)
    captions = [world.caption(i) for i in range(100)]   # `dalle judge`'s captions
    merges = dalle.learn_bpe(captions)          # a small BPE vocabulary
    merges.save("merges.txt")

Pixels are float32 planar RGB [3, size, size] in [0, 1]: numpy arrays when
numpy is importable, else nested lists (as everywhere in the binding). The
judge also takes [1, 3, size, size], and bytes holding float32 [3][size]
[size] (what ``numpy.ndarray.tobytes()`` gives).

Scenes (:class:`Scene`) use the caption words: colours "red" ... "black",
shapes "circle", "square", "triangle", "cross", sizes "small" / "large",
positions "top left" ... "bottom right", relations "above", "below",
"left of", "right of".
"""

from __future__ import annotations

import array
import ctypes
import math
import numbers
import threading
from ctypes import (POINTER, Structure, byref, c_char_p, c_float, c_int, c_int64, c_size_t,
                    c_uint, c_uint64, c_void_p, sizeof)
from dataclasses import dataclass, field

from . import _arrays, _lib
from ._lib import Handle

__all__ = ["Synth", "Scene", "SceneObject", "Verdict", "BpeMerges", "synth_sample",
           "heldout_captions", "judge", "judge_scene", "read_scene", "parse_caption",
           "is_heldout", "palette", "learn_bpe", "COLORS", "SHAPES", "SIZES", "POSITIONS",
           "RELATIONS", "SPLITS", "MIN_SIZE", "MAX_SIZE"]

COLORS = ("red", "green", "blue", "yellow", "purple", "cyan", "white", "black")
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left",
             "bottom", "bottom right")
RELATIONS = ("above", "below", "left of", "right of")
SPLITS = ("train", "heldout", "any")
SAYS = (("size", 1), ("position", 2), ("background", 4))
MIN_SIZE, MAX_SIZE = 16, 1024
CAPTION_CAP = 128
MAX_OBJECTS = 2


# --------------------------------------------------------------------------
# C declarations
# --------------------------------------------------------------------------

class _SynthParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("colors", c_int), ("shapes", c_int),
                ("max_objects", c_int), ("layouts", c_int), ("split", c_int)]


class _Object(Structure):
    _fields_ = [("color", c_int), ("shape", c_int), ("size", c_int), ("position", c_int),
                ("cx", c_float), ("cy", c_float), ("extent", c_float)]


class _Scene(Structure):
    _fields_ = [("struct_size", c_size_t), ("n_objects", c_int), ("background", c_int),
                ("relation", c_int), ("says", c_uint), ("objects", _Object * MAX_OBJECTS)]


class _Verdict(Structure):
    _fields_ = [("struct_size", c_size_t), ("color", c_int), ("shape", c_int),
                ("position", c_int), ("size", c_int), ("background", c_int),
                ("asked", c_int), ("right", c_int)]


class _BpeParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("max_merges", c_int), ("min_count", c_int64)]


class _SynthH(Structure):
    pass


class _MergesH(Structure):
    pass


SynthP = POINTER(_SynthH)
MergesP = POINTER(_MergesH)
F32P = _lib.F32P

_SIGNATURES = {
    "dalle_synth_params_init": (None, [POINTER(_SynthParams), c_size_t]),
    "dalle_synth_scene_init": (None, [POINTER(_Scene), c_size_t]),
    "dalle_synth_verdict_init": (None, [POINTER(_Verdict), c_size_t]),
    "dalle_synth_create": (c_int, [c_uint64, POINTER(_SynthParams), POINTER(SynthP)]),
    "dalle_synth_free": (None, [SynthP]),
    "dalle_synth_sample": (c_int, [SynthP, c_uint64, c_int, F32P, c_void_p, c_size_t,
                                   POINTER(_Scene)]),
    "dalle_synth_write_folder": (c_int, [SynthP, c_char_p, c_uint64, c_int64, c_int, c_int]),
    "dalle_synth_palette": (c_int, [c_int, POINTER(c_float)]),
    "dalle_synth_is_heldout": (c_int, [c_int, c_int, c_int, POINTER(c_int)]),
    "dalle_synth_parse_caption": (c_int, [c_char_p, POINTER(_Scene)]),
    "dalle_synth_judge": (c_int, [F32P, c_int, c_char_p, POINTER(_Verdict), POINTER(_Scene)]),
    "dalle_synth_judge_scene": (c_int, [F32P, c_int, POINTER(_Scene), POINTER(_Verdict),
                                        POINTER(_Scene)]),
    "dalle_synth_read": (c_int, [F32P, c_int, c_int, POINTER(_Scene)]),
    "dalle_bpe_learn_params_init": (None, [POINTER(_BpeParams), c_size_t]),
    "dalle_bpe_learn": (c_int, [POINTER(c_char_p), c_int64, POINTER(_BpeParams),
                                POINTER(MergesP)]),
    "dalle_bpe_merges_free": (None, [MergesP]),
    "dalle_bpe_merges_count": (c_int, [MergesP]),
    "dalle_bpe_merges_vocab_size": (c_int, [MergesP]),
    "dalle_bpe_merges_text": (c_void_p, [MergesP, POINTER(c_size_t)]),
    "dalle_bpe_merges_save": (c_int, [MergesP, c_char_p]),
}

_declared = False
_declare_lock = threading.Lock()


def _fn(name, what=None):
    """The C function `name` (declared on first use), or DalleError
    UNSUPPORTED when the loaded libdalle lacks it."""
    global _declared
    if not _declared:
        with _declare_lock:
            if not _declared:
                for n, (restype, argtypes) in _SIGNATURES.items():
                    _lib.declare(n, restype, argtypes)
                _declared = True
    return _lib.require(name, what or name)


def _scene_struct():
    s = _Scene()
    _fn("dalle_synth_scene_init")(byref(s), sizeof(s))
    return s


def _verdict_struct():
    v = _Verdict()
    _fn("dalle_synth_verdict_init")(byref(v), sizeof(v))
    return v


# --------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------

def _name(table, value):
    return table[value] if 0 <= value < len(table) else value


def _index(table, value, what):
    """A vocabulary word (or its index) → its index."""
    if isinstance(value, str):
        try:
            return table.index(value)
        except ValueError:
            raise ValueError(f"{what} {value!r}: expected one of {', '.join(table)}") from None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)  # range checked by the library, which names the field
    raise TypeError(f"{what}: expected a name or an int, got {type(value).__name__}")


@dataclass
class SceneObject:
    """One object: ``color``, ``shape``, ``size`` ("small" / "large"),
    ``position`` (the grid cell of its centre, "top left" ... "bottom
    right"), and its bounding square: centre ``cx``, ``cy`` and side
    ``extent`` as fractions of the picture's side (x right, y down)."""
    color: str
    shape: str
    size: str | None = None
    position: str | None = None
    cx: float = 0.0
    cy: float = 0.0
    extent: float = 0.0


@dataclass
class Scene:
    """What a picture shows or a caption asks for: ``objects`` (0 to 2
    :class:`SceneObject`), ``background`` (a colour), ``relation``
    (objects[0] <relation> objects[1], or None) and ``says``, the set of
    what a caption states besides colour and shape ("size", "position",
    "background"; empty in a scene the judge read). In a scene
    :func:`parse_caption` read, what the caption does not state is None."""
    objects: list = field(default_factory=list)
    background: str | None = None
    relation: str | None = None
    says: frozenset = frozenset()

    @classmethod
    def _from_c(cls, s):
        objs = [SceneObject(_name(COLORS, o.color), _name(SHAPES, o.shape),
                            _name(SIZES, o.size), _name(POSITIONS, o.position),
                            o.cx, o.cy, o.extent)
                for o in s.objects[:max(0, min(s.n_objects, MAX_OBJECTS))]]
        return cls(objs, _name(COLORS, s.background),
                   _name(RELATIONS, s.relation) if s.n_objects == 2 else None,
                   frozenset(w for w, bit in SAYS if s.says & bit))

    def _to_c(self):
        s = _scene_struct()
        objs = list(self.objects)
        if not 1 <= len(objs) <= MAX_OBJECTS:
            raise ValueError(f"Scene: {len(objs)} objects (1 or 2)")
        s.n_objects = len(objs)
        s.background = 0 if self.background is None else \
            _index(COLORS, self.background, "Scene.background")
        if len(objs) == 2:
            if self.relation is None:
                raise ValueError("Scene: two objects need a relation")
            s.relation = _index(RELATIONS, self.relation, "Scene.relation")
        says = 0
        for w in self.says:
            bits = dict(SAYS)
            if w not in bits:
                raise ValueError(f"Scene.says {w!r}: expected size, position or background")
            says |= bits[w]
        s.says = says
        for k, o in enumerate(objs):
            c = s.objects[k]
            c.color = _index(COLORS, o.color, f"Scene.objects[{k}].color")
            c.shape = _index(SHAPES, o.shape, f"Scene.objects[{k}].shape")
            c.size = 0 if o.size is None else _index(SIZES, o.size, f"Scene.objects[{k}].size")
            c.position = 0 if o.position is None else \
                _index(POSITIONS, o.position, f"Scene.objects[{k}].position")
            c.cx, c.cy, c.extent = float(o.cx), float(o.cy), float(o.extent)
        return s


@dataclass
class Verdict:
    """The judge's answer per attribute: True (right), False (wrong) or
    None (the caption does not state it). ``asked`` / ``right`` count them;
    ``passed`` is every stated attribute right; ``seen`` is the
    :class:`Scene` the judge read."""
    color: bool | None
    shape: bool | None
    position: bool | None
    size: bool | None
    background: bool | None
    asked: int
    right: int
    seen: Scene

    @property
    def passed(self) -> bool:
        return self.asked > 0 and self.right == self.asked

    @classmethod
    def _from_c(cls, v, seen):
        def b(x):
            return None if x < 0 else bool(x)
        return cls(b(v.color), b(v.shape), b(v.position), b(v.size), b(v.background),
                   v.asked, v.right, Scene._from_c(seen))


# --------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------

def _int(v, name, lo=None, hi=None):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} = {v}: outside {lo}..{hi}")
    return v


def _u64(v, name):
    return _int(v, name, 0, (1 << 64) - 1)


class Synth(Handle):
    """A generator of the synthetic world's items: ``Synth(seed=0, *,
    colors=8, shapes=4, max_objects=2, layouts=1, split="train")``.

    Item ``index`` is a pure function of (seed, world, split, index): the
    same on every machine. ``split``: "train" (never a held-out colour,
    shape, background combination), "heldout" (always one, background
    named: the captions of ``dalle judge``) or "any". A world option out of
    range raises DalleError (INVALID_ARGUMENT) naming it.
    """

    _what = "Synth"

    def __init__(self, seed=0, *, colors=8, shapes=4, max_objects=2, layouts=1,
                 split="train"):
        super().__init__()
        p = _SynthParams()
        _fn("dalle_synth_params_init")(byref(p), sizeof(p))
        p.colors = _int(colors, "colors", -(1 << 31), (1 << 31) - 1)
        p.shapes = _int(shapes, "shapes", -(1 << 31), (1 << 31) - 1)
        p.max_objects = _int(max_objects, "max_objects", -(1 << 31), (1 << 31) - 1)
        p.layouts = _int(layouts, "layouts", -(1 << 31), (1 << 31) - 1)
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected 'train', 'heldout' or 'any'")
        p.split = SPLITS.index(split)
        self.seed = _u64(seed, "seed")
        self.world = {"colors": p.colors, "shapes": p.shapes, "max_objects": p.max_objects,
                      "layouts": p.layouts}
        self.split = split
        h = SynthP()
        _lib.check(_fn("dalle_synth_create")(self.seed, byref(p), byref(h)))
        self._h = h

    def _free(self, h):
        _fn("dalle_synth_free")(h)

    def __repr__(self):
        state = "closed" if self.closed else f"split={self.split!r}, {self.world}"
        return f"<dalle.Synth seed={self.seed} {state}>"

    def _sample(self, index, size, want_pixels, want_caption, want_scene):
        index = _u64(index, "index")
        out = None
        if want_pixels:
            size = _int(size, "size", -(1 << 31), (1 << 31) - 1)
            # out of range: the library refuses it (and names it) before writing
            out = _arrays.Out("f", (3, size, size) if MIN_SIZE <= size <= MAX_SIZE else (1,))
        buf = ctypes.create_string_buffer(CAPTION_CAP) if want_caption else None
        scene = _scene_struct() if want_scene else None
        with self._use() as h:
            _lib.check(_fn("dalle_synth_sample")(h, index, size if want_pixels else 0,
                                                 out.ptr if out else None, buf,
                                                 CAPTION_CAP if buf else 0,
                                                 byref(scene) if scene else None))
        return (out.value() if out else None,
                buf.value.decode("utf-8") if buf else None,
                Scene._from_c(scene) if scene else None)

    def sample(self, index=0, size=64):
        """Item ``index``: (caption, pixels [3, size, size] float32 in [0, 1])."""
        pixels, caption, _ = self._sample(index, size, True, True, False)
        return caption, pixels

    def caption(self, index=0) -> str:
        """Item ``index``'s caption alone (no picture is drawn)."""
        return self._sample(index, 0, False, True, False)[1]

    def scene(self, index=0) -> Scene:
        """Item ``index``'s scene: what its picture shows and its caption says."""
        return self._sample(index, 0, False, False, True)[2]

    def pixels(self, index=0, size=64):
        """Item ``index``'s picture [3, size, size] alone."""
        return self._sample(index, size, True, False, False)[0]

    def captions(self, n, first=0) -> list:
        """The captions of items first .. first + n - 1."""
        n = _int(n, "n", 0, 1 << 24)
        return [self.caption(first + i) for i in range(n)]

    def write_folder(self, dir, count, *, first=0, size=64, n_captions=1):
        """Write items first .. first + count - 1 into ``dir`` (created; its
        parent must exist) in DALLE-pytorch's layout: %08d.png and %08d.txt
        with the item's caption then up to n_captions - 1 other wordings."""
        with self._use() as h:
            _lib.check(_fn("dalle_synth_write_folder")(
                h, _lib.fspath(dir, "dir"), _u64(first, "first"),
                _int(count, "count", -(1 << 63), (1 << 63) - 1),
                _int(size, "size", -(1 << 31), (1 << 31) - 1),
                _int(n_captions, "n_captions", -(1 << 31), (1 << 31) - 1)))


def synth_sample(seed=0, index=0, size=64, *, split="train", **world):
    """Item ``index`` of ``seed`` in the world (``colors``, ``shapes``,
    ``max_objects``, ``layouts`` as :class:`Synth`): (caption, pixels
    [3, size, size] float32 in [0, 1])."""
    with Synth(seed, split=split, **world) as g:
        return g.sample(index, size)


def heldout_captions(n=100, seed=0, **world) -> list:
    """The first ``n`` held-out captions of ``seed``: what ``dalle judge -n
    N --seed S`` asks a model to draw (pass the world it was trained on)."""
    with Synth(seed, split="heldout", **world) as g:
        return g.captions(n)


def palette(color):
    """Colour ``color`` (a name or 0..7) as (r, g, b) in [0, 1]."""
    rgb = (c_float * 3)()
    _lib.check(_fn("dalle_synth_palette")(_index(COLORS, color, "palette: color"), rgb))
    return tuple(float(v) for v in rgb)


def is_heldout(color, shape, background) -> bool:
    """Whether (object colour, shape, background) is a held-out combination
    (names or indices)."""
    out = c_int(0)
    _lib.check(_fn("dalle_synth_is_heldout")(_index(COLORS, color, "color"),
                                             _index(SHAPES, shape, "shape"),
                                             _index(COLORS, background, "background"),
                                             byref(out)))
    return bool(out.value)


def parse_caption(caption) -> Scene:
    """The :class:`Scene` a caption asks for (DalleError FORMAT when it
    names no object, more than two, an object without a colour, or two
    objects without a relation)."""
    s = _scene_struct()
    _lib.check(_fn("dalle_synth_parse_caption")(_text(caption, "caption"), byref(s)))
    scene = Scene._from_c(s)
    # what the caption does not state is not known
    if "background" not in scene.says:
        scene.background = None
    single = len(scene.objects) == 1
    for o in scene.objects:
        if not (single and "size" in scene.says):
            o.size = None
        if not (single and "position" in scene.says):
            o.position = None
    return scene


# --------------------------------------------------------------------------
# The judge
# --------------------------------------------------------------------------

def _text(s, what):
    if not isinstance(s, str):
        raise TypeError(f"{what}: expected a str, got {type(s).__name__}")
    if "\0" in s:
        raise ValueError(f"{what}: a NUL character")
    return s.encode("utf-8")


def _picture(pixels, what):
    """(pointer, size, keep-alive) of one picture [3, s, s] / [1, 3, s, s],
    or float32 bytes of one."""
    if isinstance(pixels, (bytes, bytearray, memoryview)):
        raw = bytes(pixels)
        n = len(raw) // 4
        s = math.isqrt(n // 3) if n else 0
        if len(raw) % 4 or 3 * s * s != n or s == 0:
            raise ValueError(f"{what}: {len(raw)} bytes are not float32 [3][size][size]")
        a = array.array("f")
        a.frombytes(raw)
        c = (ctypes.c_float * len(a)).from_buffer(a)
        return ctypes.cast(c, F32P), s, (a, c)
    buf = _arrays.to_c(pixels, "f", what)
    shape = tuple(buf.shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2] or shape[1] == 0:
        raise ValueError(f"{what}: expected one picture [3, size, size], got shape "
                         f"{list(buf.shape)}")
    return buf.ptr, shape[1], buf


def judge(pixels, caption) -> Verdict:
    """Whether a picture shows what a caption of the world says: colour and
    shape always, size, position and background when the caption states
    them (plain image analysis; it reads a VAE's blurred output)."""
    ptr, size, keep = _picture(pixels, "judge: pixels")
    v, seen = _verdict_struct(), _scene_struct()
    _lib.check(_fn("dalle_synth_judge")(ptr, size, _text(caption, "judge: caption"), byref(v),
                                        byref(seen)))
    del keep
    return Verdict._from_c(v, seen)


def judge_scene(pixels, want) -> Verdict:
    """:func:`judge` against a :class:`Scene` (parse_caption's, or
    Synth.scene's) instead of a caption."""
    if not isinstance(want, Scene):
        raise TypeError(f"judge_scene: want must be a dalle.Scene, got {type(want).__name__}")
    ptr, size, keep = _picture(pixels, "judge_scene: pixels")
    w = want._to_c()
    v, seen = _verdict_struct(), _scene_struct()
    _lib.check(_fn("dalle_synth_judge_scene")(ptr, size, byref(w), byref(v), byref(seen)))
    del keep
    return Verdict._from_c(v, seen)


def read_scene(pixels, max_objects=2) -> Scene:
    """Read a picture without a caption: its background and its largest
    ``max_objects`` (1 or 2) objects, largest first."""
    ptr, size, keep = _picture(pixels, "read_scene: pixels")
    seen = _scene_struct()
    _lib.check(_fn("dalle_synth_read")(ptr, size, _int(max_objects, "max_objects",
                                                       -(1 << 31), (1 << 31) - 1),
                                       byref(seen)))
    del keep
    return Scene._from_c(seen)


# --------------------------------------------------------------------------
# BPE
# --------------------------------------------------------------------------

class BpeMerges(Handle):
    """CLIP-format BPE merges learnt by :func:`learn_bpe`: ``count`` merges,
    ``vocab_size`` (512 + count + 2) ids, ``text`` (the merges file) and
    ``save(path)`` (what ``--bpe`` and dalle.Tokenizer load)."""

    _what = "BpeMerges"

    def _free(self, h):
        _fn("dalle_bpe_merges_free")(h)

    @property
    def count(self) -> int:
        with self._use() as h:
            return _fn("dalle_bpe_merges_count")(h)

    @property
    def vocab_size(self) -> int:
        with self._use() as h:
            return _fn("dalle_bpe_merges_vocab_size")(h)

    @property
    def text(self) -> str:
        n = c_size_t(0)
        with self._use() as h:
            p = _fn("dalle_bpe_merges_text")(h, byref(n))
            return ctypes.string_at(p, n.value).decode("utf-8")

    def save(self, path):
        """Write the merges file (atomically)."""
        with self._use() as h:
            _lib.check(_fn("dalle_bpe_merges_save")(h, _lib.fspath(path)))

    def __repr__(self):
        return "<dalle.BpeMerges closed>" if self.closed else \
            f"<dalle.BpeMerges {self.count} merges, {self.vocab_size} ids>"


def learn_bpe(texts, *, max_merges=10000, min_count=1) -> BpeMerges:
    """Learn BPE merges from captions (a list of str), as ``dalle
    train-bpe``: the most frequent pair first, at most ``max_merges``
    (0..48894), only pairs seen ``min_count`` times or more."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError("learn_bpe: texts must be a list of str")
    encoded = [_text(t, f"learn_bpe: texts[{i}]") for i, t in enumerate(texts)]
    arr = (c_char_p * max(1, len(encoded)))(*encoded)
    p = _BpeParams()
    _fn("dalle_bpe_learn_params_init")(byref(p), sizeof(p))
    p.max_merges = _int(max_merges, "max_merges", -(1 << 31), (1 << 31) - 1)
    p.min_count = _int(min_count, "min_count", -(1 << 63), (1 << 63) - 1)
    m = BpeMerges()
    h = MergesP()
    _lib.check(_fn("dalle_bpe_learn")(arr, len(encoded), byref(p), byref(h)))
    m._h = h
    return m
