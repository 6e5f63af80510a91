"""libdalle's Python side.

The binding (ctypes, standard library only; numpy and Pillow optional)::

    import dalle
    with dalle.Dalle("model.dalle") as m:
        ids = m.sample(m.tokenize("a green triangle"), seed=42)
        dalle.write_png("out.png", m.decode(ids))
    images = dalle.generate("model.dalle", "a green triangle", n=8,
                            clip="clip.dalle", seed=42)      # best first

Classes: :class:`Dalle` (transformer + VAE), :class:`Vae`, :class:`Clip`,
:class:`Tokenizer`, :class:`Bundle` (read-only inspection through the C
reader); errors are :class:`DalleError`. See docs/python.md.

The synthetic world and its judge (:mod:`dalle.synth`: :class:`Synth`,
:func:`synth_sample`, :func:`judge`, :func:`learn_bpe`, ...) and training
(:mod:`dalle.train`: :class:`Trainer`, :class:`VaeTrainer`,
:class:`ClipTrainer`, :class:`TokenData`, :class:`ImageData`) wrap
include/dalle/train.h; see docs/synthetic-world.md and docs/training.md.

Importing this package loads no C library: libdalle is loaded on first use
(see :mod:`dalle._lib` for where it is looked for), so the checkpoint
converter (``python3 -m dalle.convert``) and the pure-Python bundle
reader/writer (``dalle.bundle``) work without it.
"""

__version__ = "1.0.0"

from ._lib import DalleError, Status  # no library loaded here

__all__ = [
    "__version__", "DalleError", "Status",
    "Dalle", "Vae", "Clip", "Tokenizer", "Bundle", "TensorInfo",
    "generate", "GeneratedImage",
    "write_png", "read_image", "to_pil", "from_pil", "rgb_bytes",
    "library_version", "library_path", "set_log_callback", "use_numpy",
    "Synth", "Scene", "SceneObject", "Verdict", "BpeMerges", "synth_sample",
    "heldout_captions", "judge", "judge_scene", "read_scene", "parse_caption", "is_heldout",
    "palette", "learn_bpe",
    "TokenData", "ImageData", "Trainer", "VaeTrainer", "ClipTrainer",
]

_LAZY = {
    "Dalle": ("model", "Dalle"),
    "Vae": ("model", "Vae"),
    "write_png": ("model", "write_png"),
    "read_image": ("model", "read_image"),
    "to_pil": ("model", "to_pil"),
    "from_pil": ("model", "from_pil"),
    "rgb_bytes": ("model", "rgb_bytes"),
    "Clip": ("clip", "Clip"),
    "Tokenizer": ("tokenizer", "Tokenizer"),
    "Bundle": ("bundle_info", "Bundle"),
    "TensorInfo": ("bundle_info", "TensorInfo"),
    "generate": ("generate", "generate"),
    "GeneratedImage": ("generate", "GeneratedImage"),
    "library_path": ("_lib", "library_path"),
    "library_version": ("_lib", "version"),
    "set_log_callback": ("_lib", "set_log_callback"),
    "use_numpy": ("_arrays", "use_numpy"),
}
_LAZY.update({name: ("synth", name) for name in (
    "Synth", "Scene", "SceneObject", "Verdict", "BpeMerges", "synth_sample",
    "heldout_captions", "judge", "judge_scene", "read_scene", "parse_caption", "is_heldout",
    "palette", "learn_bpe")})
_LAZY.update({name: ("train", name) for name in (
    "TokenData", "ImageData", "Trainer", "VaeTrainer", "ClipTrainer")})


def __getattr__(name):
    # PEP 562: the binding's modules are imported on first use, so that
    # `import dalle` stays as light as the converter needs.
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module("." + module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dalle' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
