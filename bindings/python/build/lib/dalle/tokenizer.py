"""``dalle.Tokenizer``: the CLIP byte-level BPE tokenizer exactly as
DALLE-pytorch's SimpleTokenizer, over libdalle's ``dalle_tokenizer``.

    tok = dalle.Tokenizer("model.dalle")     # a bundle converted with --bpe,
                                             # or bpe_simple_vocab_16e6.txt
    tok.encode("a green triangle")           # [ids] (no start/end tokens)
    tok.decode(ids)                          # str
    tok.tokenize(["a", "b"], 64)             # [2, 64] ids, 0-padded
    tok.tokenize_clip(["a"], 77)             # OpenAI clip.tokenize

Invalid UTF-8 cannot come from a Python str; lone surrogates in a str are
passed through as bytes that the library refuses (DalleError
INVALID_ARGUMENT naming the byte), as it refuses any invalid UTF-8.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_int, c_size_t

from . import _arrays, _lib
from ._lib import Handle

__all__ = ["Tokenizer"]


def _utf8(text, what):
    if isinstance(text, (bytes, bytearray)):
        b = bytes(text)
    elif isinstance(text, str):
        b = text.encode("utf-8", "surrogatepass")
    else:
        raise TypeError(f"{what}: expected a str, got {type(text).__name__}")
    if b"\0" in b:
        raise ValueError(f"{what}: a NUL character in the text")
    return b


class Tokenizer(Handle):
    """``Tokenizer(path)``: path is a bundle holding ``tokenizer.bpe_merges``
    (any bundle converted with ``--bpe``, or a "tokenizer" bundle) or a
    merges file such as bpe_simple_vocab_16e6.txt.

    Raises DalleError: IO (no such file), FORMAT (a malformed merges file),
    NOT_FOUND (a bundle without a tokenizer), UNSUPPORTED (the loaded
    libdalle has no tokenizer API).

    Thread safety: the C handle keeps a cache, so calls on one object are
    serialised by a lock; use one Tokenizer per thread for parallelism.
    """

    _what = "Tokenizer"

    def __init__(self, path):
        super().__init__()
        create = _lib.require("dalle_tokenizer_create", "dalle.Tokenizer")
        self.path = path
        h = _lib.TokenizerP()
        _lib.check(create(_lib.fspath(path), byref(h)))
        self._h = h

    def _free(self, h):
        _lib.lib().dalle_tokenizer_free(h)

    def __repr__(self):
        return f"<dalle.Tokenizer {self.path!r}{' closed' if self.closed else ''}>"

    @property
    def vocab_size(self) -> int:
        """49408 for the CLIP merges (<|startoftext|> = vocab_size - 2,
        <|endoftext|> = vocab_size - 1)."""
        fn = _lib.require("dalle_tokenizer_vocab_size", "Tokenizer.vocab_size")
        with self._use() as h:
            return fn(h)

    @property
    def sot(self) -> int:
        """The id of <|startoftext|>."""
        return self.vocab_size - 2

    @property
    def eot(self) -> int:
        """The id of <|endoftext|>."""
        return self.vocab_size - 1

    def encode(self, text) -> list:
        """SimpleTokenizer.encode: a caption's ids, without start/end
        tokens, as a list of int."""
        fn = _lib.require("dalle_tokenizer_encode", "Tokenizer.encode")
        b = _utf8(text, "Tokenizer.encode")
        n = c_int()
        with self._use() as h:
            self._check(fn(h, b, None, 0, byref(n)), h)
            cap = n.value
            buf = (ctypes.c_int32 * max(cap, 1))()
            self._check(fn(h, b, buf, cap, byref(n)), h)
        return list(buf[:n.value])

    def decode(self, ids) -> str:
        """SimpleTokenizer.decode with upstream's remove_start_end=True
        (which drops the ids 49406, 40407 and 0: upstream's typo, kept so
        results match). ids: a list / 1-D numpy array of int."""
        fn = _lib.require("dalle_tokenizer_decode", "Tokenizer.decode")
        buf_in = _arrays.to_c(ids, "i", "Tokenizer.decode: ids")
        if len(buf_in.shape) != 1:
            raise ValueError(f"Tokenizer.decode: expected a 1-D list of ids, "
                             f"got shape {list(buf_in.shape)}")
        n = buf_in.shape[0]
        length = c_size_t()
        with self._use() as h:
            self._check(fn(h, buf_in.ptr, n, None, 0, byref(length)), h)
            out = ctypes.create_string_buffer(length.value + 1)
            self._check(fn(h, buf_in.ptr, n, out, len(out), byref(length)), h)
        return out.raw[:length.value].decode("utf-8", "replace")

    def _tokenize(self, cname, what, texts, context_length, truncate):
        fn = _lib.require(cname, what)
        single = isinstance(texts, (str, bytes))
        if single:
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"{what}: expected a str or a list of str")
        if not isinstance(context_length, int) or isinstance(context_length, bool):
            raise TypeError(f"{what}: context_length must be an int")
        encoded = [_utf8(t, what) for t in texts]
        width = max(context_length, 0)
        out = _arrays.Out("i", (len(texts), width))
        base = ctypes.cast(out.ptr, ctypes.c_void_p).value if texts else 0
        with self._use() as h:
            for i, b in enumerate(encoded):
                row = ctypes.cast(base + 4 * i * width, _lib.I32P)
                self._check(fn(h, b, row, context_length, 1 if truncate else 0), h)
        return out.value()

    def tokenize(self, texts, context_length=256, truncate_text=False):
        """DALLE-pytorch's tokenize(texts, context_length, truncate_text):
        ids [len(texts), context_length] (int32 numpy array or nested
        lists), right-padded with 0, no start/end tokens. A caption with
        more tokens than context_length raises DalleError (TOO_LONG, the
        message gives its token count) unless truncate_text."""
        return self._tokenize("dalle_tokenizer_tokenize", "Tokenizer.tokenize", texts,
                              context_length, truncate_text)

    def tokenize_clip(self, texts, context_length=77, truncate=False):
        """OpenAI CLIP's clip.tokenize: <|startoftext|> + ids +
        <|endoftext|>, 0-padded; when truncated, the last kept id is
        <|endoftext|>."""
        return self._tokenize("dalle_tokenizer_tokenize_clip", "Tokenizer.tokenize_clip",
                              texts, context_length, truncate)
