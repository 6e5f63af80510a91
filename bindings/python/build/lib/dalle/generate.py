"""``dalle.generate``: caption → images in one call, ranked by CLIP when
given one.

    images = dalle.generate("model.dalle", "a green triangle", n=8,
                            clip="clip.dalle", seed=42)
    images[0].save("best.png")          # best first when clip is given
    images[0].image                     # a PIL image when Pillow is installed
    images[0].score                     # the CLIP score (None without clip)
"""

from __future__ import annotations

import math

from . import _arrays
from .model import Dalle, rgb_bytes, to_pil, write_png

__all__ = ["generate", "GeneratedImage"]


class GeneratedImage:
    """One generated image.

    Attributes: ``ids`` (its image tokens), ``pixels`` (float32 [3, H, W] in
    [0, 1]: a numpy array or nested lists), ``score`` (the CLIP score, or
    None), ``index`` (its position in the sampled batch), ``seed``,
    ``width``, ``height``. ``image`` is a PIL RGB image when Pillow is
    installed, else the raw 8-bit RGB bytes (H·W·3, row-major), as
    :meth:`rgb` returns them.
    """

    __slots__ = ("ids", "pixels", "score", "index", "seed", "width", "height", "_pil")

    def __init__(self, ids, pixels, score, index, seed, size):
        self.ids, self.pixels, self.score = ids, pixels, score
        self.index, self.seed = index, seed
        self.width = self.height = size
        self._pil = None

    def rgb(self) -> bytes:
        """Interleaved 8-bit RGB bytes, H·W·3, row-major."""
        return rgb_bytes([self.pixels])[0]

    def to_pil(self):
        """A PIL RGB image (needs Pillow)."""
        if self._pil is None:
            self._pil = to_pil([self.pixels])[0]
        return self._pil

    @property
    def image(self):
        try:
            import PIL  # noqa: F401
        except ImportError:
            return self.rgb()
        return self.to_pil()

    def save(self, path):
        """Write the image as a PNG (libdalle's writer; no Pillow needed)."""
        write_png(path, [self.pixels])

    def __repr__(self):
        s = "" if self.score is None else f" score={self.score:.4f}"
        return f"<dalle.GeneratedImage {self.width}x{self.height} #{self.index}{s}>"


def _rows(x):
    """numpy array or nested list → list of rows (each as is)."""
    return [x[i] for i in range(len(x))]


def generate(model, caption, n=1, *, clip=None, seed=0, filter_thres=0.5, temperature=1.0,
             cond_scale=1.0, prime=None, n_prime=None, truncate=False, progress=None,
             abort=None, batch_size=None):
    """Generate `n` images for `caption`; returns a list of
    :class:`GeneratedImage`, best first when `clip` is given (else in
    sampling order).

    model: a :class:`dalle.Dalle` or the path of a "dalle" bundle (opened
    and closed here). caption: a str (tokenized with the bundle's tokenizer;
    truncate=True cuts a caption that is too long) or caption ids
    [text_seq_len]. clip: a :class:`dalle.Clip`, the path of a CLIP bundle,
    or None. seed, filter_thres, temperature, cond_scale, prime, n_prime,
    progress, abort: as :meth:`Dalle.sample` (progress reports image tokens
    over all batches). batch_size: images per dalle_sample call (default:
    all n in one call; the library batches internally).

    Every image is reproducible: the same (model, caption, n, seed,
    batch_size) gives the same images.
    """
    from .clip import Clip
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"generate: n must be an int >= 1, got {n!r}")
    own = []
    try:
        if not isinstance(model, Dalle):
            model = Dalle(model)
            own.append(model)
        if clip is not None and not isinstance(clip, Clip):
            clip = Clip(clip)
            own.append(clip)
        if isinstance(caption, str):
            text = model.tokenize(caption, truncate=truncate)
        else:
            text = caption
        shape = _arrays.shape_of(text)
        if len(shape) == 2 and shape[0] == 1:
            text = text[0]
        elif len(shape) != 1:
            raise ValueError("generate: caption must be a str or one row of ids")
        text_row = text.tolist() if hasattr(text, "tolist") else list(text)

        bs = n if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise ValueError("generate: batch_size must be an int >= 1")
        total_tokens = n * model.image_seq_len
        ids_rows, pixel_rows = [], []
        done_before = 0
        for start in range(0, n, bs):
            count = min(bs, n - start)
            prog = None
            if progress is not None:
                base = done_before

                def prog(done, total, base=base):
                    progress(base + done, total_tokens)
            ids = model.sample([text_row] * count, seed=(seed + start) % (1 << 64),
                               filter_thres=filter_thres, temperature=temperature,
                               cond_scale=cond_scale, prime=prime, n_prime=n_prime,
                               progress=prog, abort=abort)
            done_before += count * model.image_seq_len
            pixels = model.decode(ids)
            ids_rows += _rows(ids)
            pixel_rows += _rows(pixels)

        scores = [None] * n
        if clip is not None:
            scores = _clip_scores(clip, caption, text_row, pixel_rows)
        out = [GeneratedImage(ids_rows[i], pixel_rows[i], scores[i], i, seed,
                              model.image_size) for i in range(n)]
        if clip is not None:
            out.sort(key=lambda g: (-g.score if not math.isnan(g.score) else math.inf,
                                    g.index))
        return out
    finally:
        for h in own:
            h.close()


def _clip_scores(clip, caption, text_row, pixel_rows):
    """CLIP scores of the images for the caption. DALLE-pytorch's CLIP at
    the image size takes the pixels as they are (as generate_images does);
    otherwise (OpenAI CLIP, another size) each image goes through CLIP's own
    preprocessing from 8-bit RGB (clip_preprocess), as a saved PNG would."""
    from . import _lib
    if isinstance(caption, str):
        text = clip.tokenize(caption)
    else:
        w = clip.text_seq_len
        text = (list(text_row) + [0] * w)[:w]
    np = _arrays.numpy()
    size = len(pixel_rows[0][0])
    if size == clip.image_size and clip.kind == "clip":
        images = np.stack(pixel_rows) if np is not None else pixel_rows
    elif _lib.has("clip_preprocess"):
        pre = [clip.preprocess(rgb, size, size) for rgb in rgb_bytes(pixel_rows)]
        images = np.concatenate(pre) if np is not None else [p[0] for p in pre]
    else:  # an older libdalle: Pillow's resize, CLIP's normalisation here
        from .clip import _normalize
        from .model import from_pil
        images = from_pil(to_pil(pixel_rows), clip.image_size)
        if clip.kind == "openai_clip":
            images = _normalize(images)
    s = clip.score(text, images)
    return [float(v) for v in (s.tolist() if hasattr(s, "tolist") else s)]


# The package exposes the function generate() under the same name as this
# module. `import dalle.generate` binds the module there instead; make the
# module callable so that dalle.generate(...) works either way.
class _CallableModule(type(math)):
    def __call__(self, *args, **kwargs):
        return generate(*args, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
