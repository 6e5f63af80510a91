"""``dalle.Vae`` (image tokens ⇄ pixels) and ``dalle.Dalle`` (the
transformer with its VAE), over libdalle's ``dalle_ctx``.

    import dalle
    with dalle.Dalle("model.dalle") as m:
        text = m.tokenize("a green triangle")          # [1, text_seq_len]
        ids = m.sample(text, seed=42)                  # [1, image_seq_len]
        pixels = m.decode(ids)                         # [1, 3, size, size] in [0, 1]
        dalle.write_png("out.png", pixels)

Arrays: inputs are numpy arrays or nested lists; outputs are numpy arrays
(int32 ids, float32 logits/pixels) when numpy is importable, else nested
lists. Type and shape problems raise TypeError / ValueError before reaching
C; everything else (ids out of range, bad parameters, a wrong bundle) is
the library's :class:`dalle.DalleError`.
"""

from __future__ import annotations

import math
import numbers
from ctypes import byref, c_float

from . import _arrays, _lib
from ._lib import DalleError, Handle, Status

__all__ = ["Vae", "Dalle", "write_png", "to_pil", "from_pil", "rgb_bytes",
           "DEFAULT_PRIME_FRACTION"]

# DALLE-pytorch's generate_images: num_init_img_tokens = int(0.4375 * image_seq_len)
DEFAULT_PRIME_FRACTION = 0.4375


def _real(v, name):
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    return float(v)


class Vae(Handle):
    """An image tokenizer: a bundle of kind "dvae", "openai_dvae" or "vqgan"
    (or the VAE of a "dalle" bundle).

    ``Vae(path, n_threads=0, backend="cpu", device=0, max_batch=8)``;
    raises DalleError (status IO, FORMAT, VERSION, CHECKSUM, MISMATCH, ...)
    with the library's message when the bundle cannot be loaded.

    Shapes: ``image_size`` (pixels per side), ``image_seq_len`` (tokens per
    image), ``num_image_tokens`` (codebook size); ``kind``, ``meta`` (the
    bundle's metadata dict), ``path``.

    Thread safety: one object runs one call at a time (calls from several
    threads are serialised by a lock); use one object per thread to compute
    in parallel. Release it with close() or a ``with`` block.
    """

    _what = "Vae"

    def __init__(self, path, *, n_threads=0, backend="cpu", device=0, max_batch=8):
        super().__init__()
        L = _lib.lib()
        self.path = path
        params = _lib.ctx_params(n_threads, backend, device, max_batch)
        h = _lib.CtxP()
        _lib.check(L.dalle_ctx_create(_lib.fspath(path), byref(params), byref(h)))
        self._h = h
        b = L.dalle_ctx_bundle(h)
        self.kind = (L.dalle_bundle_kind(b) or b"").decode() if b else ""
        self._meta = None
        self._shapes = {
            "text_seq_len": L.dalle_text_seq_len(h),
            "num_text_tokens": L.dalle_num_text_tokens(h),
            "image_seq_len": L.dalle_image_seq_len(h),
            "num_image_tokens": L.dalle_num_image_tokens(h),
            "image_size": L.dalle_image_size(h),
            "total_tokens": L.dalle_total_tokens(h),
        }

    def _free(self, h):
        _lib.lib().dalle_ctx_free(h)

    def _handle_error(self, h):
        return (_lib.lib().dalle_ctx_last_error(h) or b"").decode("utf-8", "replace")

    def __repr__(self):
        state = "closed" if self.closed else f"kind={self.kind!r}"
        return f"<dalle.{type(self).__name__} {self.path!r} {state}>"

    # ---- shapes -----------------------------------------------------------

    def _shape(self, name):
        if self._h is None:
            raise DalleError(Status.INVALID_ARGUMENT, f"{self._what} is closed")
        return self._shapes[name]

    image_size = property(lambda self: self._shape("image_size"),
                          doc="Pixels per side of the model's images.")
    image_seq_len = property(lambda self: self._shape("image_seq_len"),
                             doc="Image tokens per image.")
    num_image_tokens = property(lambda self: self._shape("num_image_tokens"),
                                doc="The VAE's codebook size (image vocabulary).")

    @property
    def meta(self) -> dict:
        """The bundle's metadata (a dict, read once)."""
        if self._meta is None:
            from .bundle_info import read_meta
            with self._use() as h:
                L = _lib.lib()
                self._meta = read_meta(L, L.dalle_ctx_bundle(h))
        return dict(self._meta)

    # ---- VAE --------------------------------------------------------------

    def decode(self, ids):
        """Image tokens [batch, image_seq_len] (or one row) → pixels float32
        [batch, 3, image_size, image_size] in [0, 1]."""
        buf = _arrays.ids_2d(ids, "decode: ids", self.image_seq_len)
        batch = buf.shape[0]
        s = self.image_size
        out = _arrays.Out("f", (batch, 3, s, s))
        with self._use() as h:
            self._check(_lib.lib().dalle_decode(h, buf.ptr, batch, out.ptr), h)
        return out.value()

    def encode(self, images):
        """Pixels [batch, 3, image_size, image_size] in [0, 1] (numpy,
        nested lists, or PIL images, which are resized and centre-cropped)
        → image tokens int32 [batch, image_seq_len]."""
        buf = self._images_in(images, "encode: images", self.image_size)
        batch = buf.shape[0]
        out = _arrays.Out("i", (batch, self.image_seq_len))
        with self._use() as h:
            self._check(_lib.lib().dalle_encode(h, buf.ptr, batch, out.ptr), h)
        return out.value()

    @staticmethod
    def _images_in(images, name, size):
        if _is_pil(images) or (isinstance(images, (list, tuple)) and images
                               and all(_is_pil(i) for i in images)):
            images = from_pil(images, size)
        return _arrays.images_4d(images, name, size)


class Dalle(Vae):
    """A DALL·E model: a bundle of kind "dalle" (transformer + VAE).

    ``Dalle(path, n_threads=0, backend="cpu", device=0, max_batch=8)``.
    Opening a VAE-only bundle raises DalleError (MISMATCH): use
    :class:`Vae` for those. Adds to Vae's shapes ``text_seq_len``,
    ``num_text_tokens`` and ``total_tokens`` (the width of a logits row).

    Thread safety: as :class:`Vae`. Sampling is deterministic for a seed
    whatever ``n_threads`` is.
    """

    _what = "Dalle"

    def __init__(self, path, **params):
        super().__init__(path, **params)
        if self._shapes["text_seq_len"] == 0:
            kind = self.kind
            self.close()
            raise DalleError(Status.MISMATCH,
                             f"{path}: a bundle of kind '{kind}' has no transformer "
                             f"(open it with dalle.Vae)")

    text_seq_len = property(lambda self: self._shape("text_seq_len"),
                            doc="Caption tokens per text row.")
    num_text_tokens = property(lambda self: self._shape("num_text_tokens"),
                               doc="The text vocabulary size.")
    total_tokens = property(lambda self: self._shape("total_tokens"),
                            doc="Width of a logits row: text vocabulary + one padding id "
                                "per text position + image vocabulary.")

    # ---- text -------------------------------------------------------------

    def tokenize(self, text, *, truncate=False, context_length=None):
        """Caption(s) → ids int32 [batch, context_length] (default
        text_seq_len), 0-padded, with the bundle's BPE tokenizer, as
        DALLE-pytorch's tokenize(). `text` is a str or a list of str.
        A caption too long raises DalleError (TOO_LONG) unless truncate."""
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not texts or \
                not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize: expected a str or a non-empty list of str")
        n = self.text_seq_len if context_length is None else context_length
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("tokenize: context_length must be an int")
        encoded = []
        for t in texts:
            if "\0" in t:
                raise ValueError("tokenize: a NUL character in the caption")
            encoded.append(t.encode("utf-8", "surrogatepass"))
        out = _arrays.Out("i", (len(texts), max(n, 0)))
        ptr = out.ptr
        L = _lib.lib()
        import ctypes
        with self._use() as h:
            for i, t in enumerate(encoded):
                row = ctypes.cast(ctypes.addressof(ptr.contents) + 4 * i * max(n, 0), _lib.I32P)
                self._check(L.dalle_tokenize(h, t, row, n, 1 if truncate else 0), h)
        return out.value()

    def _text_in(self, text, name):
        if isinstance(text, str) or (isinstance(text, (list, tuple)) and text
                                     and all(isinstance(t, str) for t in text)):
            text = self.tokenize(text)
        return _arrays.ids_2d(text, name, self.text_seq_len)

    # ---- logits -----------------------------------------------------------

    def logits(self, text, image=None, incremental=False, cond_scale=1.0):
        """Teacher-forced logits float32 [batch, rows, total_tokens], as
        DALLE.forward(text, image) computes them.

        text: ids [batch, text_seq_len] (0 = padding; a str or list of str
        is tokenized first). image: ids [batch, n_image], 0 <= n_image <=
        image_seq_len, or None. Row p predicts token p + 1 of [<bos>, text,
        image]: rows = text_seq_len + 1 + n_image, or text_seq_len +
        image_seq_len for a complete image. Masked entries are exactly
        -FLT_MAX (-3.4028234663852886e+38). incremental=True computes them
        one token at a time through the KV cache, as generation does
        (dalle_logits_incremental). cond_scale != 1: classifier-free
        guidance."""
        t = self._text_in(text, "logits: text")
        batch = t.shape[0]
        if image is None:
            img, n_image = None, 0
        else:
            img = _arrays.ids_2d(image, "logits: image")
            if img.shape[0] != batch:
                raise ValueError(f"logits: text has {batch} rows but image has {img.shape[0]}")
            n_image = img.shape[1]
            if n_image > self.image_seq_len:
                raise ValueError(f"logits: image rows of {n_image} ids, expected at most "
                                 f"{self.image_seq_len}")
        cs = _real(cond_scale, "logits: cond_scale")
        L = _lib.lib()
        fn = L.dalle_logits
        if incremental:
            fn = _lib.require("dalle_logits_incremental", "Dalle.logits(incremental=True)")
        with self._use() as h:
            rows = L.dalle_logits_rows(h, n_image)
            if rows <= 0:  # pragma: no cover - shapes were checked above
                raise ValueError(f"logits: n_image = {n_image}: out of range")
            out = _arrays.Out("f", (batch, rows, self._shapes["total_tokens"]))
            self._check(fn(h, t.ptr, img.ptr if img is not None and n_image else None,
                           batch, n_image, c_float(cs), out.ptr), h)
        return out.value()

    # ---- sampling ---------------------------------------------------------

    def sample(self, text, seed=0, filter_thres=0.5, temperature=1.0, cond_scale=1.0,
               prime=None, *, n_prime=None, num_images=None, progress=None, abort=None):
        """Sample image tokens int32 [batch, image_seq_len], as
        DALLE-pytorch's generate_images (without the decoding).

        text: ids [batch, text_seq_len] (or one row; a str or list of str is
        tokenized). num_images: repeat a single caption row this many times.
        seed: 64-bit; the same seed gives the same tokens on every run and
        for any thread count. filter_thres: top-k keeps max(int((1 - thres)
        * total_tokens), 1) logits (0 <= thres < 1). temperature > 0.
        cond_scale: classifier-free guidance (1 = off).
        prime: image tokens [batch, n] (or one row, used for every image) to
        start from, or pixels [batch, 3, size, size] / PIL images, which are
        encoded with the model's VAE first; n_prime: how many of those tokens
        to keep (default: all given ids; for pixels int(0.4375 *
        image_seq_len), as upstream).
        progress(done, total): called after each image token. abort(): polled
        between tokens; return True to stop (DalleError ABORTED). Ctrl-C
        (KeyboardInterrupt) stops the call between tokens too.
        """
        t = self._text_in(text, "sample: text")
        batch = t.shape[0]
        if num_images is not None:
            if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
                raise ValueError("sample: num_images must be an int >= 1")
            if batch != 1 and batch != num_images:
                raise ValueError(f"sample: {batch} text rows for num_images={num_images}")
            if batch == 1 and num_images > 1:
                t = _repeat_rows(t, num_images)
                batch = num_images
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"sample: seed must be an int, got {type(seed).__name__}")
        if not 0 <= seed < (1 << 64):
            raise ValueError("sample: seed must be in [0, 2**64)")
        p = _lib.sample_params()
        p.seed = seed
        p.filter_thres = _real(filter_thres, "sample: filter_thres")
        p.temperature = _real(temperature, "sample: temperature")
        p.cond_scale = _real(cond_scale, "sample: cond_scale")
        keep = []
        if prime is not None:
            pr = self._prime_in(prime, batch, n_prime)
            keep.append(pr)
            p.prime = pr.ptr
            p.n_prime = pr.shape[1]
        elif n_prime not in (None, 0):
            raise ValueError("sample: n_prime given without prime")
        state = {"exc": None}
        if progress is not None and not callable(progress):
            raise TypeError("sample: progress must be callable")
        if abort is not None and not callable(abort):
            raise TypeError("sample: abort must be callable")

        def on_progress(done, total, user):
            if state["exc"] is None:
                try:
                    progress(done, total)
                except BaseException as e:  # stop at the next abort poll
                    state["exc"] = e

        def on_abort(user):
            if state["exc"] is not None:
                return 1
            try:
                return 1 if (abort is not None and abort()) else 0
            except BaseException as e:
                state["exc"] = e
                return 1

        if progress is not None:
            p.progress = _lib.PROGRESS_FN(on_progress)
            keep.append(p.progress)
        p.abort = _lib.ABORT_FN(on_abort)
        keep.append(p.abort)
        out = _arrays.Out("i", (batch, self.image_seq_len))
        with self._use() as h, _CtrlC(state):
            status = _lib.lib().dalle_sample(h, t.ptr, batch, byref(p), out.ptr)
        if state["exc"] is not None:
            raise state["exc"]
        if status:
            _lib.check(status, lambda: self._handle_error(self._h) if self._h else "")
        return out.value()

    def generate_text(self, prefix=None, seed=0, filter_thres=0.5, temperature=1.0):
        """Continue a caption, as DALLE.generate_texts: prefix is 0 ..
        text_seq_len text ids (a str is tokenized first, without padding) or
        None. Returns text_seq_len ids (a list): the prefix, then sampled
        ids, which may include the padding ids num_text_tokens + i (drop
        them before decoding, as upstream)."""
        fn = _lib.require("dalle_generate_text", "Dalle.generate_text")
        if prefix is None:
            ids = []
        elif isinstance(prefix, str):
            row = self.tokenize(prefix, truncate=True)[0]
            row = row.tolist() if hasattr(row, "tolist") else list(row)
            while row and row[-1] == 0:
                row.pop()
            ids = row
        else:
            ids = prefix
        buf = _arrays.to_c(ids, "i", "generate_text: prefix")
        if len(buf.shape) != 1:
            raise ValueError("generate_text: prefix must be one row of ids")
        n = buf.shape[0]
        if n > self.text_seq_len:
            raise ValueError(f"generate_text: a prefix of {n} ids, at most {self.text_seq_len}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < (1 << 64):
            raise ValueError("generate_text: seed must be an int in [0, 2**64)")
        p = _lib.sample_params()
        p.seed = seed
        p.filter_thres = _real(filter_thres, "generate_text: filter_thres")
        p.temperature = _real(temperature, "generate_text: temperature")
        out = _arrays.Out("i", (self.text_seq_len,))
        with self._use() as h:
            self._check(fn(h, buf.ptr if n else None, n, byref(p), out.ptr), h)
        return out.flat()

    def _prime_in(self, prime, batch, n_prime):
        shape = _arrays.shape_of(prime) if not _is_pil(prime) and not (
            isinstance(prime, (list, tuple)) and prime and _is_pil(prime[0])) else None
        if shape is None or len(shape) in (3, 4):
            ids = self.encode(prime)
            if n_prime is None:
                n_prime = int(DEFAULT_PRIME_FRACTION * self.image_seq_len)
            pr = _arrays.ids_2d(ids, "sample: prime")
        else:
            pr = _arrays.ids_2d(prime, "sample: prime")
            if n_prime is None:
                n_prime = pr.shape[1]
        if not isinstance(n_prime, int) or isinstance(n_prime, bool):
            raise TypeError("sample: n_prime must be an int")
        if not 0 <= n_prime <= pr.shape[1]:
            raise ValueError(f"sample: n_prime = {n_prime}: prime rows have {pr.shape[1]} ids")
        if n_prime > self.image_seq_len:
            raise ValueError(f"sample: prime rows of {n_prime} ids, expected at most "
                             f"{self.image_seq_len}")
        if pr.shape[0] not in (1, batch):
            raise ValueError(f"sample: prime has {pr.shape[0]} rows for a batch of {batch}")
        if pr.shape[0] != batch or n_prime != pr.shape[1]:
            flat = _flat_ids(pr)
            w = pr.shape[1]
            rows = [flat[(r if pr.shape[0] > 1 else 0) * w:][:n_prime] for r in range(batch)]
            pr = _arrays.ids_2d(rows if n_prime else [[] for _ in range(batch)], "sample: prime")
            pr.shape = (batch, n_prime)
        return pr


class _CtrlC:
    """While a long C call runs in the main thread, turn SIGINT into a flag
    that the abort callback sees (Python's default handler would raise
    KeyboardInterrupt inside the ctypes callback, where it is lost); the
    call then stops between tokens and KeyboardInterrupt is raised after."""

    def __init__(self, state):
        self.state, self.old = state, None

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            def handler(signum, frame):
                if self.state["exc"] is None:
                    self.state["exc"] = KeyboardInterrupt()
            self.old = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            import signal
            signal.signal(signal.SIGINT, self.old)
        return False


def _flat_ids(buf):
    n = math.prod(buf.shape)
    return [buf.ptr[i] for i in range(n)]


def _repeat_rows(row, n):
    flat = _flat_ids(row)
    return _arrays.ids_2d([flat] * n, "sample: text")


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

def _is_pil(x):
    t = type(x)
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in t.__mro__)


def write_png(path, pixels):
    """Write images [batch, 3, h, w] (or one [3, h, w]) in [0, 1] as one PNG
    (a grid when batch > 1), with libdalle's writer."""
    buf = _arrays.to_c(pixels, "f", "write_png: pixels")
    shape = buf.shape
    if len(shape) == 3:
        shape = (1,) + tuple(shape)
    if len(shape) != 4 or shape[1] != 3 or 0 in shape:
        raise ValueError(f"write_png: expected images [batch, 3, h, w], got shape {list(shape)}")
    _lib.check(_lib.lib().dalle_write_png(_lib.fspath(path), buf.ptr, shape[0], shape[2],
                                          shape[3]))


def _flat_pixels(pixels):
    """(flat float list or numpy array, shape [B,3,H,W])."""
    np = _arrays.numpy()
    if np is not None or type(pixels).__module__ == "numpy":
        import numpy as _np
        a = _np.asarray(pixels, dtype=_np.float32)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"expected images [batch, 3, h, w], got shape {list(a.shape)}")
        return a, a.shape
    buf = _arrays.to_c(pixels, "f", "pixels")
    shape = tuple(buf.shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"expected images [batch, 3, h, w], got shape {list(shape)}")
    return buf._keep[0], shape


def rgb_bytes(pixels) -> list:
    """Images [batch, 3, h, w] in [0, 1] → a list of `batch` bytes objects,
    each h*w*3 bytes of interleaved 8-bit RGB (row-major), rounded as
    dalle_write_png rounds (clamp to [0, 1], × 255, + 0.5)."""
    flat, (b, _, hh, ww) = _flat_pixels(pixels)
    np = _arrays.numpy()
    if np is not None or type(flat).__module__ == "numpy":
        import numpy as _np
        a = _np.clip(_np.nan_to_num(flat, nan=0.0), 0.0, 1.0)
        a = (a * 255.0 + 0.5).astype(_np.uint8).transpose(0, 2, 3, 1)
        return [a[i].tobytes() for i in range(b)]
    out = []
    plane = hh * ww
    for i in range(b):
        base = i * 3 * plane
        px = bytearray(3 * plane)
        for c in range(3):
            off = base + c * plane
            for j in range(plane):
                v = flat[off + j]
                v = 0.0 if not v >= 0.0 else (1.0 if v > 1.0 else v)
                px[3 * j + c] = int(v * 255.0 + 0.5)
        out.append(bytes(px))
    return out


def to_pil(pixels) -> list:
    """Images [batch, 3, h, w] in [0, 1] → a list of PIL RGB images (needs
    Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("to_pil needs Pillow (pip install Pillow); without it use "
                          "dalle.rgb_bytes() or dalle.write_png()") from None
    _, shape = _flat_pixels(pixels)
    return [Image.frombytes("RGB", (shape[3], shape[2]), data) for data in rgb_bytes(pixels)]


def from_pil(images, size):
    """PIL image(s) → planar float pixels [batch, 3, size, size] in [0, 1]:
    RGB, the shorter side resized to `size` (bicubic), centre-cropped."""
    from PIL import Image
    if _is_pil(images):
        images = [images]
    planes = []
    np = _arrays.numpy()
    for im in images:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        data = im.tobytes()
        if np is not None:
            a = np.frombuffer(data, dtype=np.uint8).reshape(size, size, 3)
            planes.append(a.transpose(2, 0, 1).astype(np.float32) / 255.0)
        else:
            planes.append([[[data[(y * size + x) * 3 + c] / 255.0 for x in range(size)]
                            for y in range(size)] for c in range(3)])
    if np is not None:
        return np.stack(planes)
    return planes


def read_image(path, size):
    """Read a PNG or JPEG file as one image [1, 3, size, size] in [0, 1]
    with libdalle's reader (dalle_read_image): the shorter side scaled to
    `size` (antialiased bilinear), the centre square kept. Pass
    ``model.image_size`` as size to get an image for encode() or priming."""
    fn = _lib.require("dalle_read_image", "dalle.read_image")
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError("read_image: size must be an int")
    if not 1 <= size <= 16384:
        # the library checks this too, but the buffer is sized from it here
        out = _arrays.Out("f", (1, 3, 1, 1))
        _lib.check(fn(_lib.fspath(path), size, out.ptr))
    out = _arrays.Out("f", (1, 3, size, size))
    _lib.check(fn(_lib.fspath(path), size, out.ptr))
    return out.value()
