"""``dalle.Clip``: score how well images match a caption, over libdalle's
``clip_ctx`` (DALLE-pytorch's CLIP, kind "clip", or OpenAI's CLIP, kind
"openai_clip").

    with dalle.Clip("clip.dalle") as c:
        scores = c.score("a green triangle", images)   # [batch] floats
        order = c.rank("a green triangle", images)     # best first

Images are [batch, 3, image_size, image_size] float arrays "in the model's
own input range" (DALLE-pytorch's CLIP: as given, usually [0, 1]; OpenAI
CLIP: normalised with CLIP's mean/std). PIL images (and raw RGB bytes, see
Clip.preprocess) go through libdalle's clip_preprocess, which resizes,
centre-crops and normalises exactly as clip.load()'s transform.
"""

from __future__ import annotations

import ctypes
from ctypes import byref

from . import _arrays, _lib
from ._lib import DalleError, Handle, Status

__all__ = ["Clip", "CLIP_MEAN", "CLIP_STD"]

# OpenAI CLIP's preprocessing (clip.clip._transform)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Clip(Handle):
    """``Clip(path, n_threads=0, backend="cpu", device=0, max_batch=8)``:
    a bundle of kind "clip" (DALLE-pytorch) or "openai_clip" (OpenAI's ViT
    CLIP). backend="cuda" (or "auto" with a GPU) computes on the GPU.

    Shapes: ``text_seq_len`` (caption ids per row), ``num_text_tokens``,
    ``image_size``, ``embed_dim``; and ``kind``, ``path``.

    Text arguments are a str / list of str (tokenized with the bundle's
    tokenizer: DALLE-pytorch's tokenize for "clip", clip.tokenize for
    "openai_clip"), or ids [n, text_seq_len] / [text_seq_len]. Image
    arguments are float arrays [n, 3, image_size, image_size] in the model's
    own input range (see the module docstring), or PIL images, which go
    through :meth:`preprocess`.

    Thread safety: one object runs one call at a time (calls from several
    threads are serialised by a lock); use one object per thread to compute
    in parallel.
    """

    _what = "Clip"

    def __init__(self, path, *, n_threads=0, backend="cpu", device=0, max_batch=8):
        super().__init__()
        L = _lib.lib()
        self.path = path
        params = _lib.ctx_params(n_threads, backend, device, max_batch)
        h = _lib.ClipCtxP()
        _lib.check(L.clip_ctx_create(_lib.fspath(path), byref(params), byref(h)))
        self._h = h
        self._text_seq_len = L.clip_text_seq_len(h)
        self._image_size = L.clip_image_size(h)
        self._num_text_tokens = L.clip_num_text_tokens(h) if _lib.has("clip_num_text_tokens") \
            else 0
        self._embed_dim = L.clip_embed_dim(h) if _lib.has("clip_embed_dim") else 0
        self._tokenizer = None
        self._meta = None
        if _lib.has("clip_ctx_bundle"):
            b = L.clip_ctx_bundle(h)
            self.kind = (L.dalle_bundle_kind(b) or b"").decode() if b else ""
        else:
            from .bundle_info import Bundle
            with Bundle(path) as b:
                self.kind = b.kind

    def _free(self, h):
        _lib.lib().clip_ctx_free(h)
        tok, self._tokenizer = self._tokenizer, None
        if tok is not None:
            tok.close()

    def _handle_error(self, h):
        return (_lib.lib().clip_ctx_last_error(h) or b"").decode("utf-8", "replace")

    def __repr__(self):
        state = "closed" if self.closed else f"kind={self.kind!r}"
        return f"<dalle.Clip {self.path!r} {state}>"

    def _shape(self, v):
        if self._h is None:
            raise DalleError(Status.INVALID_ARGUMENT, "Clip is closed")
        return v

    text_seq_len = property(lambda self: self._shape(self._text_seq_len),
                            doc="Caption ids per text row.")
    num_text_tokens = property(lambda self: self._shape(self._num_text_tokens),
                               doc="Text ids are 0 .. num_text_tokens - 1.")
    image_size = property(lambda self: self._shape(self._image_size),
                          doc="Pixels per side of the images the model takes.")
    embed_dim = property(lambda self: self._shape(self._embed_dim),
                         doc="Width of a feature vector (encode_image / encode_text).")

    @property
    def meta(self) -> dict:
        """The bundle's metadata (a dict, read once)."""
        if self._meta is None:
            from .bundle_info import read_meta
            fn = _lib.require("clip_ctx_bundle", "Clip.meta")
            with self._use() as h:
                self._meta = read_meta(_lib.lib(), fn(h))
        return dict(self._meta)

    # ---- inputs -----------------------------------------------------------

    def tokenize(self, texts, truncate=True):
        """Caption(s) → ids [n, text_seq_len] with the tokenizer stored in
        the CLIP bundle (converted with --bpe): DALLE-pytorch's tokenize for
        kind "clip", OpenAI's clip.tokenize for "openai_clip"."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            self._shape(None)
            self._tokenizer = Tokenizer(self.path)
        if self.kind == "openai_clip":
            return self._tokenizer.tokenize_clip(texts, self.text_seq_len, truncate)
        return self._tokenizer.tokenize(texts, self.text_seq_len, truncate)

    def _text_rows(self, text, name):
        if isinstance(text, str) or (isinstance(text, (list, tuple)) and text
                                     and all(isinstance(t, str) for t in text)):
            text = self.tokenize(text)
        return _arrays.ids_2d(text, name, self.text_seq_len)

    def preprocess(self, image, height=None, width=None):
        """One raw image → the model's input [1, 3, image_size, image_size],
        exactly as clip.load()'s transform (bicubic resize of the short side,
        centre crop, and for OpenAI CLIP its mean/std normalisation).
        image: a PIL image, or 8-bit interleaved RGB bytes with its height
        and width."""
        from .model import _is_pil
        if _is_pil(image):
            im = image.convert("RGB")
            width, height = im.size
            data = im.tobytes()
        elif isinstance(image, (bytes, bytearray, memoryview)):
            if not isinstance(height, int) or not isinstance(width, int):
                raise TypeError("Clip.preprocess: raw RGB bytes need height and width")
            data = bytes(image)
            if len(data) != height * width * 3:
                raise ValueError(f"Clip.preprocess: {len(data)} bytes for {height}x{width} "
                                 f"RGB (expected {height * width * 3})")
        else:
            raise TypeError("Clip.preprocess: expected a PIL image or RGB bytes")
        fn = _lib.require("clip_preprocess", "Clip.preprocess")
        s = self.image_size
        out = _arrays.Out("f", (1, 3, s, s))
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        with self._use() as h:
            self._check(fn(h, buf, height, width, out.ptr), h)
        return out.value()

    def _images(self, images, name):
        from .model import _is_pil
        if _is_pil(images):
            images = [images]
        if isinstance(images, (list, tuple)) and images and all(_is_pil(i) for i in images):
            pre = [self.preprocess(i) for i in images]
            np = _arrays.numpy()
            images = np.concatenate(pre) if np is not None else [p[0] for p in pre]
        return _arrays.images_4d(images, name, self.image_size)

    def _mask_rows(self, text_mask, t):
        m = _arrays.to_c(_mask_ints(text_mask), "i", "Clip.score: text_mask")
        if len(m.shape) == 1:
            m.shape = (1,) + tuple(m.shape)
        if tuple(m.shape) != tuple(t.shape):
            raise ValueError(f"Clip.score: text_mask has shape {list(m.shape)}, "
                             f"text {list(t.shape)}")
        n = t.shape[0] * t.shape[1]
        return (ctypes.c_uint8 * n)(*[1 if m.ptr[i] else 0 for i in range(n)])

    # ---- scores -------------------------------------------------------------

    def score(self, text, images, text_mask=None):
        """Similarity of images to captions, as DALLE-pytorch's
        ``CLIP(text, images, text_mask, return_loss=False)``: `batch` scores
        (a float32 numpy array or a list): exp(temperature) · cos for
        DALLE-pytorch's CLIP, exp(logit_scale) · cos for OpenAI's.

        text: one caption (a str, or ids [text_seq_len]) scored against
        every image, or ids [batch, text_seq_len] scored pairwise (row i
        with image i). text_mask (DALLE-pytorch CLIP only): the same shape
        as the ids, true for real tokens (upstream's usual ``text != 0``);
        None: no mask, the mean runs over every position (upstream's
        default, and what generate_images does)."""
        t = self._text_rows(text, "Clip.score: text")
        imgs = self._images(images, "Clip.score: images")
        batch = imgs.shape[0]
        rows = t.shape[0]
        if rows not in (1, batch):
            raise ValueError(f"Clip.score: {rows} caption rows for {batch} images "
                             f"(give one caption, or one per image)")
        mask = None
        if text_mask is not None:
            fn = _lib.require("clip_score_masked", "Clip.score(text_mask=...)")
            mask = self._mask_rows(text_mask, t)
        L = _lib.lib()
        width = self._text_seq_len
        plane = 3 * self._image_size * self._image_size
        tbase = ctypes.cast(t.ptr, ctypes.c_void_p).value
        ibase = ctypes.cast(imgs.ptr, ctypes.c_void_p).value
        mbase = ctypes.addressof(mask) if mask is not None else None
        out = (ctypes.c_float * batch)()
        obase = ctypes.addressof(out)
        with self._use() as h:
            for r in range(rows):
                count = batch if rows == 1 else 1
                first = 0 if rows == 1 else r
                trow = ctypes.cast(tbase + 4 * width * r, _lib.I32P)
                irow = ctypes.cast(ibase + 4 * plane * first, _lib.F32P)
                orow = ctypes.cast(obase + 4 * first, _lib.F32P)
                if mask is None:
                    st = L.clip_score(h, trow, irow, count, orow)
                else:
                    st = fn(h, trow, mbase + width * r, irow, count, orow)
                self._check(st, h)
        return _as_f32(list(out), (batch,))

    def rank(self, text, images):
        """Rerank images by one caption: the image indices, best first
        (equal scores keep their input order), as clip_rank. Scores are
        :meth:`score` without a mask."""
        t = self._text_rows(text, "Clip.rank: text")
        if t.shape[0] != 1:
            raise ValueError("Clip.rank: expected one caption")
        imgs = self._images(images, "Clip.rank: images")
        n = imgs.shape[0]
        if not _lib.has("clip_rank"):
            s = self.score(text, images)
            s = s.tolist() if hasattr(s, "tolist") else list(s)
            return sorted(range(n), key=lambda i: -s[i])
        scores = (ctypes.c_float * n)()
        order = (ctypes.c_int * n)()
        with self._use() as h:
            self._check(_lib.lib().clip_rank(h, t.ptr, imgs.ptr, n, scores, order), h)
        return list(order)

    def logits_per_image(self, images, text):
        """OpenAI CLIP's ``model(images, text)[0]``: [n_images, n_texts]
        scores (DALLE-pytorch CLIP: its similarity matrix, text without a
        mask). text: str / list of str / ids [n_texts, text_seq_len]."""
        t = self._text_rows(text, "Clip.logits_per_image: text")
        imgs = self._images(images, "Clip.logits_per_image: images")
        n_img, n_txt = imgs.shape[0], t.shape[0]
        out = _arrays.Out("f", (n_img, n_txt))
        L = _lib.lib()
        if _lib.has("clip_logits_per_image"):
            with self._use() as h:
                self._check(L.clip_logits_per_image(h, imgs.ptr, n_img, t.ptr, n_txt,
                                                    out.ptr), h)
            return out.value()
        width = self._text_seq_len
        tbase = ctypes.cast(t.ptr, ctypes.c_void_p).value
        cols = []
        with self._use() as h:
            for j in range(n_txt):
                col = (ctypes.c_float * n_img)()
                row = ctypes.cast(tbase + 4 * width * j, _lib.I32P)
                self._check(L.clip_score(h, row, imgs.ptr, n_img, col), h)
                cols.append(list(col))
        return _as_f32([cols[j][i] for i in range(n_img) for j in range(n_txt)],
                       (n_img, n_txt))

    def logits_per_text(self, text, images):
        """The transpose of :meth:`logits_per_image`: [n_texts, n_images]."""
        lpi = self.logits_per_image(images, text)
        if hasattr(lpi, "T"):
            return lpi.T.copy()
        return [list(col) for col in zip(*lpi)]

    def encode_image(self, images):
        """Image features, unnormalised: [batch, embed_dim] (OpenAI:
        model.encode_image; DALLE-pytorch: to_visual_latent, before
        F.normalize)."""
        fn = _lib.require("clip_encode_image", "Clip.encode_image")
        imgs = self._images(images, "Clip.encode_image: images")
        out = _arrays.Out("f", (imgs.shape[0], self._embed_dim))
        with self._use() as h:
            self._check(fn(h, imgs.ptr, imgs.shape[0], out.ptr), h)
        return out.value()

    def encode_text(self, text):
        """Text features, unnormalised: [n_texts, embed_dim] (OpenAI:
        model.encode_text; DALLE-pytorch: to_text_latent of the mean over
        all positions, before F.normalize)."""
        fn = _lib.require("clip_encode_text", "Clip.encode_text")
        t = self._text_rows(text, "Clip.encode_text: text")
        out = _arrays.Out("f", (t.shape[0], self._embed_dim))
        with self._use() as h:
            self._check(fn(h, t.ptr, t.shape[0], out.ptr), h)
        return out.value()


def _mask_ints(mask):
    np = _arrays.numpy()
    if np is not None and isinstance(mask, np.ndarray):
        return mask.astype(np.int32)
    if type(mask).__module__ == "numpy":
        return mask.astype("int32")

    def conv(x):
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        return int(bool(x))
    return conv(mask)


def _as_f32(values, shape):
    np = _arrays.numpy()
    if np is not None:
        return np.asarray(values, dtype=np.float32).reshape(shape)
    return _arrays.nest(values, shape)


def _normalize(images):
    np = _arrays.numpy()
    if np is not None:
        mean = np.asarray(CLIP_MEAN, dtype=np.float32)[None, :, None, None]
        std = np.asarray(CLIP_STD, dtype=np.float32)[None, :, None, None]
        return (np.asarray(images, dtype=np.float32) - mean) / std
    return [[[[(v - CLIP_MEAN[c]) / CLIP_STD[c] for v in row] for row in plane]
             for c, plane in enumerate(img)] for img in images]
