"""Training in C from Python: the training API of include/dalle/train.h
(docs/training.md) over ctypes.

    import dalle
    images = dalle.ImageData.synthetic(2000, image_size=32, world_colors=3)
    with dalle.VaeTrainer(image_size=32, num_tokens=64, codebook_dim=32,
                          num_layers=2, hidden_dim=16, batch=4) as v:
        for _ in range(100):
            stats = v.step_data(images)          # {"loss": ..., "recon": ...}
        v.save("vae.dalle")
    data = dalle.TokenData.synthetic("vae.dalle", 2000, tokenizer="merges.txt",
                                     text_seq_len=16)
    with dalle.Trainer("vae.dalle", tokenizer="merges.txt", dim=64, depth=2,
                       text_seq_len=16, batch=4) as t:
        for _ in range(100):
            t.step_data(data)
        t.save("model.dalle")                    # dalle.Dalle("model.dalle") loads it

Parameters are the C structs' fields as keyword arguments, with the C
defaults (``dalle.Trainer.defaults()`` and friends list them); an unknown
name is a TypeError, a value out of range the library's DalleError naming
it. A step returns its statistics as a dict (the stats struct's fields).
``lr_schedule`` takes "constant", "cosine" or "plateau". Data sets take an
optional ``progress(done, total)`` callable.
"""

from __future__ import annotations

import ctypes
import numbers
import threading
from ctypes import (POINTER, Structure, byref, c_char_p, c_double, c_int, c_int64, c_size_t,
                    c_uint8, c_uint64, c_void_p, sizeof)

from . import _arrays, _lib
from ._lib import ABORT_FN, PROGRESS_FN, Handle

__all__ = ["TokenData", "ImageData", "Trainer", "VaeTrainer", "ClipTrainer"]

F32P, I32P = _lib.F32P, _lib.I32P
SCHEDULES = ("constant", "cosine", "plateau")

# --------------------------------------------------------------------------
# The C structs (field for field as include/dalle/train.h)
# --------------------------------------------------------------------------

_WORLD = [("world_seed", c_uint64), ("world_colors", c_int), ("world_shapes", c_int),
          ("world_max_objects", c_int), ("world_layouts", c_int), ("world_heldout", c_int)]
_CALLBACKS = [("progress", PROGRESS_FN), ("abort", ABORT_FN), ("user", c_void_p)]
_OPTIM = [("lr", c_double), ("lr_schedule", c_int), ("min_lr", c_double),
          ("warmup_steps", c_int64), ("total_steps", c_int64), ("plateau_factor", c_double),
          ("plateau_patience", c_int), ("plateau_cooldown", c_int), ("beta1", c_double),
          ("beta2", c_double), ("eps", c_double), ("weight_decay", c_double),
          ("clip_grad_norm", c_double)]


class _TokenDataParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("text_seq_len", c_int), ("truncate", c_int),
                ("strict", c_int), ("n_threads", c_int)] + _WORLD + _CALLBACKS


class _ImageDataParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("image_size", c_int), ("strict", c_int)] + \
        _WORLD + _CALLBACKS


class _TrainParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("dim", c_int), ("depth", c_int), ("heads", c_int),
                ("dim_head", c_int), ("text_seq_len", c_int), ("num_text_tokens", c_int),
                ("shift_tokens", c_int), ("rotary_emb", c_int), ("attn_types", c_char_p),
                ("loss_img_weight", c_double), ("seed", c_uint64), ("batch", c_int),
                ("n_threads", c_int)] + _OPTIM + \
        [("null_cond_prob", c_double), ("attn_dropout", c_double), ("ff_dropout", c_double),
         ("stable", c_int), ("sandwich_norm", c_int), ("shared_attn_ids", c_char_p),
         ("shared_ff_ids", c_char_p), ("reversible", c_int)]


class _TrainStats(Structure):
    _fields_ = [("struct_size", c_size_t), ("step", c_int64), ("epoch", c_int64),
                ("loss", c_double), ("loss_text", c_double), ("loss_img", c_double),
                ("grad_norm", c_double), ("lr", c_double), ("tokens", c_int64),
                ("skipped", c_int)]


class _ClipTrainParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("dim_text", c_int), ("dim_image", c_int),
                ("dim_latent", c_int), ("text_enc_depth", c_int), ("visual_enc_depth", c_int),
                ("text_heads", c_int), ("visual_heads", c_int), ("text_seq_len", c_int),
                ("num_text_tokens", c_int), ("visual_image_size", c_int),
                ("visual_patch_size", c_int), ("truncate", c_int), ("mask_padding", c_int),
                ("seed", c_uint64), ("batch", c_int), ("n_threads", c_int)] + _OPTIM


class _ClipTrainStats(Structure):
    _fields_ = [("struct_size", c_size_t), ("step", c_int64), ("epoch", c_int64),
                ("loss", c_double), ("accuracy", c_double), ("scale", c_double),
                ("grad_norm", c_double), ("lr", c_double), ("skipped", c_int)]


class _VaeTrainParams(Structure):
    _fields_ = [("struct_size", c_size_t), ("image_size", c_int), ("num_tokens", c_int),
                ("codebook_dim", c_int), ("num_layers", c_int), ("num_resnet_blocks", c_int),
                ("hidden_dim", c_int), ("smooth_l1_loss", c_int),
                ("kl_div_loss_weight", c_double), ("straight_through", c_int),
                ("temperature", c_double), ("starting_temp", c_double),
                ("temp_min", c_double), ("anneal_rate", c_double), ("anneal_every", c_int),
                ("seed", c_uint64), ("batch", c_int), ("n_threads", c_int), ("lr", c_double),
                ("lr_decay", c_double), ("steps_per_epoch", c_int64),
                ("clip_grad_norm", c_double)]


class _VaeTrainStats(Structure):
    _fields_ = [("struct_size", c_size_t), ("step", c_int64), ("epoch", c_int64),
                ("loss", c_double), ("recon", c_double), ("kl", c_double),
                ("temperature", c_double), ("lr", c_double), ("grad_norm", c_double),
                ("skipped", c_int)]


class _H(Structure):
    pass


HP = POINTER(_H)  # every opaque handle of this module (ctypes checks nothing more)
P = POINTER

_SIGNATURES = {
    # token data
    "dalle_token_data_params_init": (None, [P(_TokenDataParams), c_size_t]),
    "dalle_token_data_folder": (c_int, [c_char_p, c_char_p, c_char_p, P(_TokenDataParams),
                                        P(HP)]),
    "dalle_token_data_synthetic": (c_int, [c_char_p, c_char_p, c_int64, P(_TokenDataParams),
                                           P(HP)]),
    "dalle_token_data_free": (None, [HP]),
    "dalle_token_data_count": (c_int64, [HP]),
    "dalle_token_data_skipped": (c_int64, [HP]),
    "dalle_token_data_text_seq_len": (c_int, [HP]),
    "dalle_token_data_image_seq_len": (c_int, [HP]),
    "dalle_token_data_max_text_id": (c_int, [HP]),
    "dalle_token_data_batch": (c_int, [HP, c_uint64, c_int64, c_int, I32P, I32P]),
    # the DALL-E trainer
    "dalle_train_params_init": (None, [P(_TrainParams), c_size_t]),
    "dalle_train_stats_init": (None, [P(_TrainStats), c_size_t]),
    "dalle_trainer_create": (c_int, [c_char_p, c_char_p, P(_TrainParams), P(HP)]),
    "dalle_trainer_resume": (c_int, [c_char_p, P(_TrainParams), P(HP)]),
    "dalle_trainer_free": (None, [HP]),
    "dalle_trainer_step": (c_int, [HP, I32P, I32P, c_int, P(_TrainStats)]),
    "dalle_trainer_step_data": (c_int, [HP, HP, P(_TrainStats)]),
    "dalle_trainer_eval": (c_int, [HP, I32P, I32P, c_int, P(_TrainStats)]),
    "dalle_trainer_epoch_end": (c_int, [HP, c_double]),
    "dalle_trainer_save": (c_int, [HP, c_char_p, c_int]),
    "dalle_trainer_steps": (c_int64, [HP]),
    "dalle_trainer_num_params": (c_int64, [HP]),
    "dalle_trainer_get_params": (c_int, [HP, P(_TrainParams)]),
    "dalle_trainer_lr": (c_double, [HP]),
    "dalle_trainer_logits": (c_int, [HP, F32P, c_size_t, P(c_int)]),
    # image data
    "dalle_image_data_params_init": (None, [P(_ImageDataParams), c_size_t]),
    "dalle_image_data_folder": (c_int, [c_char_p, P(_ImageDataParams), P(HP)]),
    "dalle_image_data_synthetic": (c_int, [c_int64, P(_ImageDataParams), P(HP)]),
    "dalle_image_data_free": (None, [HP]),
    "dalle_image_data_count": (c_int64, [HP]),
    "dalle_image_data_skipped": (c_int64, [HP]),
    "dalle_image_data_image_size": (c_int, [HP]),
    "dalle_image_data_caption_count": (c_int, [HP, c_int64]),
    "dalle_image_data_caption": (c_char_p, [HP, c_int64, c_int]),
    "dalle_image_data_batch": (c_int, [HP, c_uint64, c_int64, c_int, F32P, P(c_char_p),
                                       P(c_int64)]),
    # the CLIP trainer
    "dalle_clip_train_params_init": (None, [P(_ClipTrainParams), c_size_t]),
    "dalle_clip_train_stats_init": (None, [P(_ClipTrainStats), c_size_t]),
    "dalle_clip_trainer_create": (c_int, [c_char_p, P(_ClipTrainParams), P(HP)]),
    "dalle_clip_trainer_resume": (c_int, [c_char_p, P(_ClipTrainParams), P(HP)]),
    "dalle_clip_trainer_free": (None, [HP]),
    "dalle_clip_trainer_step": (c_int, [HP, I32P, P(c_uint8), F32P, c_int,
                                        P(_ClipTrainStats)]),
    "dalle_clip_trainer_step_data": (c_int, [HP, HP, P(_ClipTrainStats)]),
    "dalle_clip_trainer_eval": (c_int, [HP, I32P, P(c_uint8), F32P, c_int,
                                        P(_ClipTrainStats)]),
    "dalle_clip_trainer_sim": (c_int, [HP, F32P, c_size_t, P(c_int)]),
    "dalle_clip_trainer_save": (c_int, [HP, c_char_p, c_int]),
    "dalle_clip_trainer_steps": (c_int64, [HP]),
    "dalle_clip_trainer_num_params": (c_int64, [HP]),
    "dalle_clip_trainer_get_params": (c_int, [HP, P(_ClipTrainParams)]),
    # the VAE trainer
    "dalle_vae_train_params_init": (None, [P(_VaeTrainParams), c_size_t]),
    "dalle_vae_train_stats_init": (None, [P(_VaeTrainStats), c_size_t]),
    "dalle_vae_trainer_create": (c_int, [P(_VaeTrainParams), P(HP)]),
    "dalle_vae_trainer_resume": (c_int, [c_char_p, P(_VaeTrainParams), P(HP)]),
    "dalle_vae_trainer_free": (None, [HP]),
    "dalle_vae_trainer_step": (c_int, [HP, F32P, c_int, P(_VaeTrainStats)]),
    "dalle_vae_trainer_step_data": (c_int, [HP, HP, P(_VaeTrainStats)]),
    "dalle_vae_trainer_eval": (c_int, [HP, F32P, c_int, P(_VaeTrainStats)]),
    "dalle_vae_trainer_encode": (c_int, [HP, F32P, c_int, I32P]),
    "dalle_vae_trainer_decode": (c_int, [HP, I32P, c_int, F32P]),
    "dalle_vae_trainer_save": (c_int, [HP, c_char_p, c_int]),
    "dalle_vae_trainer_steps": (c_int64, [HP]),
    "dalle_vae_trainer_num_params": (c_int64, [HP]),
    "dalle_vae_trainer_get_params": (c_int, [HP, P(_VaeTrainParams)]),
}

_declared = False
_declare_lock = threading.Lock()


def _fn(name):
    """The C function `name` (declared on first use), or DalleError
    UNSUPPORTED when the loaded libdalle lacks it."""
    global _declared
    if not _declared:
        with _declare_lock:
            if not _declared:
                for n, (restype, argtypes) in _SIGNATURES.items():
                    _lib.declare(n, restype, argtypes)
                _declared = True
    return _lib.require(name)


# --------------------------------------------------------------------------
# Parameters and statistics
# --------------------------------------------------------------------------

_HIDDEN = {"struct_size", "progress", "abort", "user"}


def _defaults(cls, init):
    p = cls()
    _fn(init)(byref(p), sizeof(p))
    return p


def _as_dict(s, skip=_HIDDEN):
    out = {}
    for name, _ in type(s)._fields_:
        if name in skip:
            continue
        v = getattr(s, name)
        if name == "lr_schedule":
            v = SCHEDULES[v] if 0 <= v < len(SCHEDULES) else v
        elif isinstance(v, bytes):  # attn_types, shared_attn_ids, shared_ff_ids
            v = v.decode()
        out[name] = v
    return out


def _fill(p, kwargs, what, keep):
    """Set the fields of struct p from kwargs (TypeError for unknown names
    or wrong types). Strings are kept alive in `keep`."""
    fields = dict(type(p)._fields_)
    for name, value in kwargs.items():
        if name not in fields or name in _HIDDEN:
            known = ", ".join(n for n in fields if n not in _HIDDEN)
            raise TypeError(f"{what}: unknown parameter {name!r} (known: {known})")
        ctype = fields[name]
        if name == "lr_schedule" and isinstance(value, str):
            if value not in SCHEDULES:
                raise ValueError(f"{what}: lr_schedule {value!r}: expected one of "
                                 f"{', '.join(SCHEDULES)}")
            value = SCHEDULES.index(value)
        if ctype is c_char_p:
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{what}: {name} must be a str or None")
            value = None if value is None else value.encode("utf-8")
            keep.append(value)
        elif ctype is c_double:
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{what}: {name} must be a number, got {type(value).__name__}")
            value = float(value)
        else:
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, numbers.Integral):
                raise TypeError(f"{what}: {name} must be an int, got {type(value).__name__}")
            bits = 8 * ctypes.sizeof(ctype)
            lo, hi = (0, (1 << bits) - 1) if ctype is c_uint64 else \
                (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if not lo <= value <= hi:
                raise ValueError(f"{what}: {name} = {value} does not fit its C type")
            value = int(value)
        setattr(p, name, value)
    return p


def _progress_cb(progress, what):
    if progress is None:
        return PROGRESS_FN()
    if not callable(progress):
        raise TypeError(f"{what}: progress must be callable")

    def trampoline(done, total, user):
        try:
            progress(done, total)
        except Exception:  # never unwind into C
            import traceback
            traceback.print_exc()
    return PROGRESS_FN(trampoline)


def _path(p, what):
    return None if p is None else _lib.fspath(p, what)


def _bundle_i64(path, key):
    """An integer metadata entry of a bundle (through the C reader)."""
    L = _lib.lib()
    b = _lib.BundleP()
    _lib.check(L.dalle_bundle_open(_lib.fspath(path), byref(b)))
    try:
        v = c_int64(0)
        _lib.check(L.dalle_bundle_meta_i64(b, key.encode(), byref(v)))
        return v.value
    finally:
        L.dalle_bundle_close(b)


def _image_seq_len(path):
    """Image tokens per image of the VAE in a bundle (any VAE kind, or a
    dalle bundle): (vae.image_size / 2^vae.num_layers)²."""
    side = _bundle_i64(path, "vae.image_size") >> _bundle_i64(path, "vae.num_layers")
    return side * side


def _batch_of(n, what):
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"{what}: batch must be an int")
    if not 1 <= n <= 1 << 20:
        raise ValueError(f"{what}: batch = {n} (1..2^20)")
    return int(n)


# --------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------

class _DataSet(Handle):
    """What TokenData and ImageData share: made by a C constructor from a
    parameter struct (``_prefix``_params_init) with a progress callback,
    freed by ``_prefix``_free."""

    _prefix = ""
    _params = None

    def _free(self, h):
        _fn(self._prefix + "_free")(h)

    @classmethod
    def defaults(cls) -> dict:
        return _as_dict(_defaults(cls._params, cls._prefix + "_params_init"))

    @classmethod
    def _make(cls, fn, args, params, progress):
        keep = []
        p = _fill(_defaults(cls._params, cls._prefix + "_params_init"), params,
                  cls.__name__, keep)
        p.progress = _progress_cb(progress, cls.__name__)
        h = HP()
        _lib.check(_fn(fn)(*args, byref(p), byref(h)))
        d = cls()
        d._h = h
        return d


class TokenData(_DataSet):
    """(caption ids, image ids) training pairs in memory, for
    :class:`Trainer`: ``TokenData.folder(vae, dir, tokenizer=None,
    **params)`` or ``TokenData.synthetic(vae, count, tokenizer=None,
    **params)``. Parameters: text_seq_len, truncate, strict, n_threads and
    the world's world_seed, world_colors, world_shapes, world_max_objects,
    world_layouts, world_heldout; ``progress(done, total)`` optional."""

    _what = "TokenData"
    _prefix = "dalle_token_data"
    _params = _TokenDataParams

    @classmethod
    def folder(cls, vae, dir, tokenizer=None, *, progress=None, **params):
        """The pairs of a folder in DALLE-pytorch's layout (images with
        same-named .txt captions), encoded by the VAE in bundle `vae`."""
        return cls._make("dalle_token_data_folder", (_path(vae, "vae"),
                         _path(tokenizer, "tokenizer"), _path(dir, "dir")), params, progress)

    @classmethod
    def synthetic(cls, vae, count, tokenizer=None, *, progress=None, **params):
        """Items 0 .. count - 1 of the synthetic world (world_* parameters)."""
        return cls._make("dalle_token_data_synthetic", (_path(vae, "vae"),
                         _path(tokenizer, "tokenizer"),
                         _lib_int64(count, "count")), params, progress)

    def _get(self, name):
        with self._use() as h:
            return _fn(name)(h)

    count = property(lambda self: self._get("dalle_token_data_count"), doc="Pairs.")
    skipped = property(lambda self: self._get("dalle_token_data_skipped"),
                       doc="Files a folder set passed over.")
    text_seq_len = property(lambda self: self._get("dalle_token_data_text_seq_len"))
    image_seq_len = property(lambda self: self._get("dalle_token_data_image_seq_len"))
    max_text_id = property(lambda self: self._get("dalle_token_data_max_text_id"),
                           doc="The largest caption id (num_text_tokens must exceed it).")

    def __len__(self):
        return self.count

    def batch(self, seed, step, batch):
        """The pairs of training step `step`: (text [batch, text_seq_len],
        image [batch, image_seq_len]) int32."""
        batch = _batch_of(batch, "TokenData.batch")
        with self._use() as h:
            tl = _fn("dalle_token_data_text_seq_len")(h)
            il = _fn("dalle_token_data_image_seq_len")(h)
            text, image = _arrays.Out("i", (batch, tl)), _arrays.Out("i", (batch, il))
            _lib.check(_fn("dalle_token_data_batch")(h, _u64(seed, "seed"),
                                                     _lib_int64(step, "step"), batch,
                                                     text.ptr, image.ptr))
        return text.value(), image.value()


class ImageData(_DataSet):
    """Captioned images in memory at one size, for :class:`VaeTrainer` and
    :class:`ClipTrainer`: ``ImageData.folder(dir, **params)`` or
    ``ImageData.synthetic(count, **params)``. Parameters: image_size,
    strict and the world_* ones; ``progress(done, total)`` optional."""

    _what = "ImageData"
    _prefix = "dalle_image_data"
    _params = _ImageDataParams

    @classmethod
    def folder(cls, dir, *, progress=None, **params):
        """The images of a folder in DALLE-pytorch's layout with their captions."""
        return cls._make("dalle_image_data_folder", (_path(dir, "dir"),), params, progress)

    @classmethod
    def synthetic(cls, count, *, progress=None, **params):
        """Items 0 .. count - 1 of the synthetic world."""
        return cls._make("dalle_image_data_synthetic", (_lib_int64(count, "count"),), params,
                         progress)

    def _get(self, name):
        with self._use() as h:
            return _fn(name)(h)

    count = property(lambda self: self._get("dalle_image_data_count"), doc="Images.")
    skipped = property(lambda self: self._get("dalle_image_data_skipped"))
    image_size = property(lambda self: self._get("dalle_image_data_image_size"))

    def __len__(self):
        return self.count

    def captions(self, i) -> list:
        """The captions of image i."""
        i = _lib_int64(i, "i")
        with self._use() as h:
            n = _fn("dalle_image_data_caption_count")(h, i)
            return [_fn("dalle_image_data_caption")(h, i, k).decode("utf-8") for k in range(n)]

    def batch(self, seed, step, batch):
        """The images of training step `step`: (pixels [batch, 3, size,
        size] float32, captions [batch] str, indices [batch] int)."""
        batch = _batch_of(batch, "ImageData.batch")
        with self._use() as h:
            s = _fn("dalle_image_data_image_size")(h)
            px = _arrays.Out("f", (batch, 3, s, s))
            caps = (c_char_p * batch)()
            idx = (c_int64 * batch)()
            _lib.check(_fn("dalle_image_data_batch")(h, _u64(seed, "seed"),
                                                     _lib_int64(step, "step"), batch, px.ptr,
                                                     caps, idx))
            captions = [c.decode("utf-8") for c in caps]
        return px.value(), captions, list(idx)


def _u64(v, what):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or not 0 <= v < 1 << 64:
        raise ValueError(f"{what}: expected an int in 0..2^64-1, got {v!r}")
    return int(v)


def _lib_int64(v, what):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise TypeError(f"{what}: expected an int, got {type(v).__name__}")
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"{what} = {v}: outside the int64 range")
    return int(v)


# --------------------------------------------------------------------------
# Trainers
# --------------------------------------------------------------------------

class _Trainer(Handle):
    """Common to the three trainers: params/stats structs, save, steps."""

    _params_t = _stats_t = None
    _prefix = ""
    _init = ""

    def _free(self, h):
        _fn(self._prefix + "_free")(h)

    @classmethod
    def defaults(cls) -> dict:
        """The C defaults of every parameter."""
        return _as_dict(_defaults(cls._params_t, cls._init + "_params_init"))

    @classmethod
    def _params(cls, kwargs, keep):
        return _fill(_defaults(cls._params_t, cls._init + "_params_init"), kwargs,
                     cls.__name__, keep)

    def _stats(self):
        return _defaults(self._stats_t, self._init + "_stats_init")

    @classmethod
    def _blank(cls):
        """An object without a handle yet (resume() adopts one)."""
        t = cls.__new__(cls)
        Handle.__init__(t)
        return t

    def _adopt(self, h, keep):
        self._h = h
        self._keep = keep
        self._shape_cache = None
        return self

    @property
    def params(self) -> dict:
        """The settings in force (the model shape and the optimisation)."""
        with self._use() as h:
            p = self._params_t()
            p.struct_size = sizeof(p)
            _lib.check(_fn(self._prefix + "_get_params")(h, byref(p)))
            return _as_dict(p)

    @property
    def steps(self) -> int:
        with self._use() as h:
            return _fn(self._prefix + "_steps")(h)

    @property
    def num_params(self) -> int:
        """Trainable weights (floats)."""
        with self._use() as h:
            return _fn(self._prefix + "_num_params")(h)

    def save(self, path, *, with_optimizer=False):
        """Write the model as a bundle (atomically); with_optimizer adds the
        optimiser state for resume()."""
        with self._use() as h:
            _lib.check(_fn(self._prefix + "_save")(h, _lib.fspath(path), 1 if with_optimizer
                                                   else 0))

    def _run(self, name, *args):
        st = self._stats()
        with self._use() as h:
            _lib.check(_fn(self._prefix + name)(h, *args, byref(st)))
        return _as_dict(st)

    def step_data(self, data):
        """One step on the batch `data` draws for this trainer's step
        counter: its statistics (a dict)."""
        want = self._data_type
        if not isinstance(data, want):
            raise TypeError(f"{type(self).__name__}.step_data: expected a dalle."
                            f"{want.__name__}, got {type(data).__name__}")
        with data._use() as dh:
            return self._run("_step_data", dh)

    def __repr__(self):
        return f"<dalle.{type(self).__name__} closed>" if self.closed else \
            f"<dalle.{type(self).__name__} {self.num_params} weights, step {self.steps}>"


class Trainer(_Trainer):
    """A DALL·E transformer being trained on top of a VAE:
    ``Trainer(vae, tokenizer=None, **params)`` (a fresh model; parameters
    as dalle_train_params: dim, depth, heads, dim_head, text_seq_len,
    num_text_tokens, shift_tokens, rotary_emb, attn_types ("full,axial_row"),
    loss_img_weight, seed, batch, n_threads, lr, lr_schedule, ...,
    null_cond_prob, attn_dropout, ff_dropout, stable, sandwich_norm,
    shared_attn_ids ("0,0,1"), shared_ff_ids, reversible) or
    ``Trainer.resume(checkpoint, **params)``."""

    _what = "Trainer"
    _params_t, _stats_t = _TrainParams, _TrainStats
    _prefix, _init = "dalle_trainer", "dalle_train"

    def __init__(self, vae, tokenizer=None, **params):
        super().__init__()
        keep = []
        p = self._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_trainer_create")(_path(vae, "vae"), _path(tokenizer, "tokenizer"),
                                               byref(p), byref(h)))
        self._adopt(h, keep)
        self._vae_path = vae

    @classmethod
    def resume(cls, checkpoint, **params):
        """Continue from a bundle save() wrote (with the optimiser: bit for
        bit; without: fine-tuning with a new optimiser from params)."""
        keep = []
        p = cls._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_trainer_resume")(_lib.fspath(checkpoint), byref(p), byref(h)))
        t = cls._blank()._adopt(h, keep)
        t._vae_path = checkpoint
        return t

    _data_type = TokenData

    def _pairs(self, text, image, what):
        if self._shape_cache is None:
            self._shape_cache = (self.params["text_seq_len"], _image_seq_len(self._vae_path))
        tl, il = self._shape_cache
        t = _arrays.ids_2d(text, f"{what}: text", tl)
        i = _arrays.ids_2d(image, f"{what}: image", il)
        if t.shape[0] != i.shape[0]:
            raise ValueError(f"{what}: {t.shape[0]} captions but {i.shape[0]} images")
        return t, i

    def step(self, text, image):
        """One optimiser step on caption ids [batch, text_seq_len] and image
        ids [batch, image_seq_len]: its statistics."""
        t, i = self._pairs(text, image, "Trainer.step")
        return self._run("_step", t.ptr, i.ptr, t.shape[0])

    def eval(self, text, image):
        """The loss of pairs without training."""
        t, i = self._pairs(text, image, "Trainer.eval")
        return self._run("_eval", t.ptr, i.ptr, t.shape[0])

    def epoch_end(self, loss):
        """Feed an epoch's loss to the plateau schedule."""
        with self._use() as h:
            _lib.check(_fn("dalle_trainer_epoch_end")(h, float(loss)))

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        with self._use() as h:
            return _fn("dalle_trainer_lr")(h)

    def logits(self):
        """The last forward's teacher-forced logits [batch, text_seq_len +
        image_seq_len, total_tokens] (as dalle_logits lays them out;
        total_tokens = num_text_tokens + text_seq_len + the VAE's codebook)."""
        p = self.params
        tl, nt = p["text_seq_len"], p["num_text_tokens"]
        rows = tl + _image_seq_len(self._vae_path)
        total = nt + tl + _bundle_i64(self._vae_path, "vae.num_tokens")
        cap = p["batch"] * rows * total
        out = _arrays.Out("f", (cap,))
        n = c_int(0)
        with self._use() as h:
            _lib.check(_fn("dalle_trainer_logits")(h, out.ptr, cap, byref(n)))
        b = n.value
        np = _arrays.numpy()
        if np is not None:
            return out.value()[:b * rows * total].reshape(b, rows, total)
        return _arrays.nest(out.flat()[:b * rows * total], (b, rows, total))


class VaeTrainer(_Trainer):
    """A DiscreteVAE being trained as train_vae.py trains it:
    ``VaeTrainer(**params)`` (image_size, num_tokens, codebook_dim,
    num_layers, num_resnet_blocks, hidden_dim, smooth_l1_loss,
    kl_div_loss_weight, straight_through, temperature, starting_temp,
    temp_min, anneal_rate, anneal_every, seed, batch, n_threads, lr,
    lr_decay, steps_per_epoch, clip_grad_norm) or
    ``VaeTrainer.resume(checkpoint, **params)``."""

    _what = "VaeTrainer"
    _params_t, _stats_t = _VaeTrainParams, _VaeTrainStats
    _prefix, _init = "dalle_vae_trainer", "dalle_vae_train"
    _data_type = ImageData

    def __init__(self, **params):
        super().__init__()
        keep = []
        p = self._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_vae_trainer_create")(byref(p), byref(h)))
        self._adopt(h, keep)

    @classmethod
    def resume(cls, checkpoint, **params):
        keep = []
        p = cls._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_vae_trainer_resume")(_lib.fspath(checkpoint), byref(p), byref(h)))
        return cls._blank()._adopt(h, keep)

    def _shapes(self):
        if self._shape_cache is None:
            p = self.params
            side = p["image_size"] >> p["num_layers"]
            self._shape_cache = (p["image_size"], side * side)
        return self._shape_cache

    def step(self, pixels):
        """One step on images [batch, 3, image_size, image_size] in [0, 1]."""
        b = _arrays.images_4d(pixels, "VaeTrainer.step: pixels", self._shapes()[0])
        return self._run("_step", b.ptr, b.shape[0])

    def eval(self, pixels):
        """The loss of images without training."""
        b = _arrays.images_4d(pixels, "VaeTrainer.eval: pixels", self._shapes()[0])
        return self._run("_eval", b.ptr, b.shape[0])

    def encode(self, pixels):
        """Images → ids [batch, (image_size / 2^num_layers)²] with the current weights."""
        size, n = self._shapes()
        b = _arrays.images_4d(pixels, "VaeTrainer.encode: pixels", size)
        out = _arrays.Out("i", (b.shape[0], n))
        with self._use() as h:
            _lib.check(_fn("dalle_vae_trainer_encode")(h, b.ptr, b.shape[0], out.ptr))
        return out.value()

    def decode(self, ids):
        """Ids → images [batch, 3, image_size, image_size] with the current weights."""
        size, n = self._shapes()
        b = _arrays.ids_2d(ids, "VaeTrainer.decode: ids", n)
        out = _arrays.Out("f", (b.shape[0], 3, size, size))
        with self._use() as h:
            _lib.check(_fn("dalle_vae_trainer_decode")(h, b.ptr, b.shape[0], out.ptr))
        return out.value()


class ClipTrainer(_Trainer):
    """DALLE-pytorch's CLIP being trained: ``ClipTrainer(tokenizer,
    **params)`` (dim_text, dim_image, dim_latent, text_enc_depth,
    visual_enc_depth, text_heads, visual_heads, text_seq_len,
    num_text_tokens, visual_image_size, visual_patch_size, truncate,
    mask_padding, seed, batch, n_threads, lr, ...) or
    ``ClipTrainer.resume(checkpoint, **params)``."""

    _what = "ClipTrainer"
    _params_t, _stats_t = _ClipTrainParams, _ClipTrainStats
    _prefix, _init = "dalle_clip_trainer", "dalle_clip_train"
    _data_type = ImageData

    def __init__(self, tokenizer=None, **params):
        super().__init__()
        keep = []
        p = self._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_clip_trainer_create")(_path(tokenizer, "tokenizer"), byref(p),
                                                    byref(h)))
        self._adopt(h, keep)

    @classmethod
    def resume(cls, checkpoint, **params):
        keep = []
        p = cls._params(params, keep)
        h = HP()
        _lib.check(_fn("dalle_clip_trainer_resume")(_lib.fspath(checkpoint), byref(p),
                                                    byref(h)))
        return cls._blank()._adopt(h, keep)

    def _inputs(self, text, images, mask, what):
        if self._shape_cache is None:
            p = self.params
            self._shape_cache = (p["text_seq_len"], p["visual_image_size"])
        tl, size = self._shape_cache
        t = _arrays.ids_2d(text, f"{what}: text", tl)
        im = _arrays.images_4d(images, f"{what}: images", size)
        if t.shape[0] != im.shape[0]:
            raise ValueError(f"{what}: {t.shape[0]} captions but {im.shape[0]} images")
        m = None
        if mask is not None:
            mb = _arrays.ids_2d(mask, f"{what}: mask", tl)
            if mb.shape[0] != t.shape[0]:
                raise ValueError(f"{what}: mask has {mb.shape[0]} rows, text {t.shape[0]}")
            n = mb.shape[0] * mb.shape[1]
            m = (c_uint8 * n)(*(1 if mb.ptr[k] else 0 for k in range(n)))
        return t, im, m

    def step(self, text, images, mask=None):
        """One step on caption ids [batch, text_seq_len] and images [batch,
        3, size, size] (mask: [batch, text_seq_len] truthy for real tokens,
        None: as mask_padding says)."""
        t, im, m = self._inputs(text, images, mask, "ClipTrainer.step")
        return self._run("_step", t.ptr, m, im.ptr, t.shape[0])

    def eval(self, text, images, mask=None):
        """The loss and accuracy of pairs without training."""
        t, im, m = self._inputs(text, images, mask, "ClipTrainer.eval")
        return self._run("_eval", t.ptr, m, im.ptr, t.shape[0])

    def sim(self):
        """The last step's (or evaluation's) similarity matrix [batch, batch]
        (sim[text i][image j])."""
        batch_max = self.params["batch"]
        n = c_int(0)
        out = _arrays.Out("f", (batch_max * batch_max,))
        with self._use() as h:
            _lib.check(_fn("dalle_clip_trainer_sim")(h, out.ptr, batch_max * batch_max,
                                                     byref(n)))
        b = n.value
        flat = out.flat()[:b * b]
        np = _arrays.numpy()
        if np is not None:
            return np.asarray(flat, dtype=np.float32).reshape(b, b)
        return _arrays.nest(flat, (b, b))
