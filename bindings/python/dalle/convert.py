"""Convert PyTorch checkpoints into libdalle bundles.

    python3 -m dalle.convert INPUT... -o OUT.dalle [--bpe MERGES.txt]
                             [--config VQGAN.yaml] [--image-size N]
                             [--clip-heads N] [--level N]
                             [--dtype f32|f16|bf16|int8]
    python3 -m dalle.convert --info BUNDLE

Each input's kind is recognised from its contents, never its name:

==========================  ===============================================  ============
input                       recognised by                                    bundle kind
==========================  ===============================================  ============
DALLE-pytorch dalle.pt      dict with hparams, vae_params, weights           dalle
DALLE-pytorch vae.pt        dict with hparams (DiscreteVAE kwargs), weights  dvae
DALLE-pytorch clip.pt       dict with hparams (CLIP kwargs), weights         clip
dall_e encoder.pkl          pickled dall_e.encoder.Encoder module            openai_dvae
+ decoder.pkl               pickled dall_e.decoder.Decoder module            (both needed)
OpenAI CLIP state dict      tensors named token_embedding.weight, visual.*   openai_clip
OpenAI CLIP TorchScript     TorchScript archive of clip.model.CLIP           openai_clip
taming VQModel / GumbelVQ   Lightning checkpoint {'state_dict': ...}         vqgan
 + its yaml                 YAML with model.target and model.params          (--config)
CLIP BPE merges             text starting with "#version"                    (--bpe)
==========================  ===============================================  ============

Tensor names are the upstream state-dict keys, except that every image
tokenizer lives under ``vae.`` with the names it has inside DALLE-pytorch's
DALLE (``vae.`` + DiscreteVAE key, ``vae.enc.``/``vae.dec.`` + dall_e keys,
``vae.model.`` + VQModel key). Tensors sharing one storage are written once
and the other names as aliases. Metadata keys are listed in
docs/bundle-keys.md.

``--dtype`` (DALLE bundles only) stores the large matrices of the
transformer (to_qkv, to_out, the feed-forward's two linears, to_logits and
the token embeddings) as f16, bf16 or int8 with per-block scales; the
library keeps them so in memory (docs/converter.md).

Library use: :func:`convert` raises :class:`ConvertError`; :func:`main`
prints it and returns 1.
"""

from __future__ import annotations

import argparse
import array
import collections
import math
import os
import re
import sys

from . import __version__
from . import bundle as B
from . import lowp
from . import torchfile as TF
from . import yamlmini

__all__ = ["ConvertError", "convert", "main", "info", "identify"]

CONVERTER = f"dalle.convert {__version__}"


class ConvertError(Exception):
    """A checkpoint that cannot be converted; the message names file and key."""


# ---------------------------------------------------------------- upstream kwargs
# Keyword arguments of the upstream constructors, with their defaults, at the
# golden commits (DALLE-pytorch 58c1e1a, dall_e 5be4b23, CLIP d05afc4).
# Types: the metadata type each is stored as. REQUIRED = no upstream default.

REQUIRED = object()
I64, F64, BOOL, STR, STRS, F64S = "i64", "f64", "bool", "string", "string array", "f64 array"

DALLE_KWARGS = [  # dalle_pytorch.DALLE.__init__ (minus `vae`)
    ("dim", I64, REQUIRED),
    ("num_text_tokens", I64, 10000),
    ("text_seq_len", I64, 256),
    ("depth", I64, REQUIRED),
    ("heads", I64, 8),
    ("dim_head", I64, 64),
    ("reversible", BOOL, False),
    ("attn_dropout", F64, 0.0),
    ("ff_dropout", F64, 0.0),
    ("sparse_attn", BOOL, False),
    ("attn_types", STRS, None),          # None means ('full',): stored as ["full"]
    ("loss_img_weight", F64, 7),
    ("stable", BOOL, False),
    ("sandwich_norm", BOOL, False),
    ("shift_tokens", BOOL, True),
    ("rotary_emb", BOOL, True),
    ("shared_attn_ids", STRS, None),
    ("shared_ff_ids", STRS, None),
    ("share_input_output_emb", BOOL, False),
    ("optimize_for_inference", BOOL, False),
]

DVAE_KWARGS = [  # dalle_pytorch.DiscreteVAE.__init__
    ("image_size", I64, 256),
    ("num_tokens", I64, 512),
    ("codebook_dim", I64, 512),
    ("num_layers", I64, 3),
    ("num_resnet_blocks", I64, 0),
    ("hidden_dim", I64, 64),
    ("channels", I64, 3),
    ("smooth_l1_loss", BOOL, False),
    ("temperature", F64, 0.9),
    ("straight_through", BOOL, False),
    ("reinmax", BOOL, False),
    ("kl_div_loss_weight", F64, 0.0),
    ("normalization", None, ((0.5, 0.5, 0.5, 0), (0.5, 0.5, 0.5, 1))),  # special-cased
]

CLIP_KWARGS = [  # dalle_pytorch.CLIP.__init__
    ("dim_text", I64, 512),
    ("dim_image", I64, 512),
    ("dim_latent", I64, 512),
    ("num_text_tokens", I64, 10000),
    ("text_enc_depth", I64, 6),
    ("text_seq_len", I64, 256),
    ("text_heads", I64, 8),
    ("num_visual_tokens", I64, 512),
    ("visual_enc_depth", I64, 6),
    ("visual_heads", I64, 8),
    ("visual_image_size", I64, 256),
    ("visual_patch_size", I64, 32),
    ("channels", I64, 3),
]

# Top-level checkpoint entries that only matter for training.
TRAINING_ONLY = {"epoch", "version", "opt_state", "scheduler_state", "optimizer",
                 "optimizer_state", "scheduler"}
LIGHTNING_TRAINING_ONLY = {
    "epoch", "global_step", "pytorch-lightning_version", "callbacks", "optimizer_states",
    "lr_schedulers", "hparams_name", "hyper_parameters", "hparams", "hparams_type",
    "loops", "native_amp_scaling_state", "amp_scaling_state", "NativeMixedPrecisionPlugin",
    "MixedPrecisionPlugin", "datamodule_hparams", "datamodule_hyper_parameters",
    "checkpoint_callback_best_model_score", "checkpoint_callback_best_model_path",
    "checkpoint_callback_best", "early_stop_callback_wait", "early_stop_callback_patience",
    "state_dict",  # used, listed so it is not "unknown"
}
VQGAN_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
OPENAI_CLIP_SCALARS = ("input_resolution", "context_length", "vocab_size")


# ---------------------------------------------------------------- inputs

class Input:
    """One recognised input file: ``kind`` and what was loaded from it."""

    def __init__(self, path, kind, obj=None, tf=None):
        self.path, self.kind, self.obj, self.tf = path, kind, obj, tf

    @property
    def name(self):
        return os.path.basename(self.path)


def _tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, TF.Tensor) for k, v in obj.items())


def _key_list(d, most=None) -> str:
    """A dict's keys for a message: their reprs, sorted (a damaged file's keys
    may be of any type, which sorted() alone cannot order)."""
    return ", ".join(sorted(map(repr, d))[:most])


def _kwarg_names(schema):
    return {name for name, _, _ in schema}


def identify(path) -> Input:
    """Load ``path`` and recognise what it is from its contents."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"#version" in head.split(b"\n", 1)[0] and not head.startswith((b"PK", b"\x80")):
        return Input(path, "bpe")
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        try:
            doc = yamlmini.load(path)
        except (yamlmini.YamlError, UnicodeDecodeError) as e:
            raise ConvertError(f"{path}: neither a PyTorch checkpoint nor a model config ({e})") from None
        if isinstance(doc, dict) and isinstance(doc.get("model"), dict) and "target" in doc["model"]:
            return Input(path, "vqgan_config", doc)
        raise ConvertError(f"{path}: YAML without model.target: not a taming-transformers config")
    try:
        tf = TF.load(path)
    except TF.TorchFileError as e:
        raise ConvertError(str(e)) from None
    obj = tf.obj
    if tf.format == "torchscript":
        if _is_openai_clip(TF.torchscript_state_dict(tf)):
            return Input(path, "openai_clip_jit", obj, tf)
        raise ConvertError(f"{path}: TorchScript archive of {obj!r}, not an OpenAI CLIP model")
    if isinstance(obj, TF.Stub):
        if obj.qualname() == "dall_e.encoder.Encoder":
            return Input(path, "openai_encoder", obj, tf)
        if obj.qualname() == "dall_e.decoder.Decoder":
            return Input(path, "openai_decoder", obj, tf)
        raise ConvertError(f"{path}: a pickled {obj.qualname()} is not a supported model")
    if isinstance(obj, dict):
        if "weights" in obj and "hparams" in obj:
            if "vae_params" in obj or "vae_class_name" in obj:
                return Input(path, "dalle_pytorch_dalle", obj, tf)
            hp, weights = obj["hparams"], obj["weights"]
            # the weights tell DiscreteVAE from CLIP; hparams decide if they can't
            if isinstance(weights, dict) and "codebook.weight" in weights:
                return Input(path, "dalle_pytorch_vae", obj, tf)
            if isinstance(weights, dict) and "text_emb.weight" in weights:
                return Input(path, "dalle_pytorch_clip", obj, tf)
            if isinstance(hp, dict) and set(hp) <= _kwarg_names(DVAE_KWARGS):
                return Input(path, "dalle_pytorch_vae", obj, tf)
            if isinstance(hp, dict) and set(hp) <= _kwarg_names(CLIP_KWARGS):
                return Input(path, "dalle_pytorch_clip", obj, tf)
            raise ConvertError(f"{path}: hparams match neither DiscreteVAE nor CLIP "
                               f"(keys {_key_list(hp) if isinstance(hp, dict) else repr(hp)})")
        if "state_dict" in obj and isinstance(obj["state_dict"], dict):
            return Input(path, "taming", obj, tf)
        if _tensor_dict(obj) and _is_openai_clip(obj):
            return Input(path, "openai_clip_state", obj, tf)
    keys = _key_list(obj, 8) if isinstance(obj, dict) else type(obj).__name__
    raise ConvertError(f"{path}: unrecognised checkpoint (top level: {keys})")


def _is_openai_clip(sd) -> bool:
    return "token_embedding.weight" in sd and any(k.startswith("visual.") for k in sd)


# ---------------------------------------------------------------- tensors

# checkpoint dtype -> (bundle dtype, note). float64 becomes f32 (the models
# compute in f32); bool becomes u8 and int16 widens to i32 (no such codes).
_DTYPE_MAP = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f32",
              "int64": "i64", "int32": "i32", "int16": "i32", "int8": "i8", "uint8": "u8",
              "bool": "u8"}


def _converted_bytes(t: TF.Tensor, name: str) -> bytes:
    """The tensor's C-order bytes in its bundle dtype."""
    data = t.tobytes()
    t.storage.release()  # keep one storage in memory at a time
    if t.dtype == "float64":
        src = array.array("d", data)
        out = array.array("f", src)
        if any(math.isinf(y) and not math.isinf(x) for x, y in zip(src, out)):
            raise ConvertError(f"{name}: float64 value outside the float32 range")
        return out.tobytes()
    if t.dtype == "int16":
        return array.array("i", array.array("h", data)).tobytes()
    return data


# ---------------------------------------------------------------- reduced precision

#: --dtype choices: None keeps the checkpoint's types (float32 for DALLE-pytorch)
DTYPES = ("f32", "f16", "bf16", "int8")

# The DALLE matrices --dtype reduces (2-D only): attention's to_qkv and
# to_out, the feed-forward's two linears (net.0, net.3), to_logits and the
# token embeddings (SharedEmbedding's *_emb.linear.weight with
# share_input_output_emb: views of to_logits.1.weight, written as aliases),
# under the plain or the reversible layer names. Norms,
# biases, LayerScale, positional tables and the VAE stay as they are.
_REDUCIBLE = re.compile(r"(transformer\..*\.(to_qkv\.weight|to_out\.0\.weight|net\.[03]\.weight)"
                        r"|to_logits\.1\.weight|(text|image)_emb(\.linear)?\.weight)\Z")
_FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def reducible(name: str, t: TF.Tensor) -> bool:
    """Whether --dtype applies to tensor ``name`` of a DALLE bundle."""
    return bool(_REDUCIBLE.match(name)) and len(t.shape) == 2 and t.dtype in _FLOAT_DTYPES


def _float32_bytes(t: TF.Tensor, name: str) -> bytes:
    """The tensor as float32 bytes (float64 narrowed, halves widened)."""
    if t.dtype == "float16":
        data = t.tobytes()
        t.storage.release()
        return array.array("f", lowp.from_f16(data)).tobytes()
    if t.dtype == "bfloat16":
        data = t.tobytes()
        t.storage.release()
        return array.array("f", lowp.from_bf16(data)).tobytes()
    return _converted_bytes(t, name)


def _scale_name(name: str) -> str:
    return name + ":scale"


class TensorPlan:
    """Adds named checkpoint tensors to a writer, turning shared storage into aliases.

    Tensors that share a storage (tied embeddings, shared layers) are grouped;
    the group's largest contiguous member (the "anchor") is written once, at
    the place of the group's first member, and every other contiguous member
    lying inside the anchor's elements becomes an alias into it. Anything else
    (non-contiguous views, views outside the anchor) is materialised.
    """

    def __init__(self):
        self.items = []  # (bundle name, Tensor, source description)
        self.reduce = {}  # bundle name -> "f16" | "bf16" | "int8" (--dtype)

    def add(self, name: str, t: TF.Tensor, where: str):
        if not isinstance(t, TF.Tensor):
            raise ConvertError(f"{where}: {name}: not a tensor ({t!r})")
        if t.dtype not in _DTYPE_MAP:
            raise ConvertError(f"{where}: {name}: unsupported dtype {t.dtype}")
        if t.numel == 0:
            raise ConvertError(f"{where}: {name}: empty tensor (shape {list(t.shape)})")
        self.items.append((name, t, where))

    def names(self):
        return [n for n, _, _ in self.items]

    def emit(self, w: B.BundleWriter):
        groups = collections.defaultdict(list)
        for pos, (name, t, _) in enumerate(self.items):
            groups[id(t.storage)].append(pos)
        anchor_of = {}
        for members in groups.values():
            contiguous = [p for p in members if self.items[p][1].is_contiguous()]
            if len(members) > 1 and contiguous:
                # largest first; earliest wins ties so the order stays natural
                anchor_of[id(self.items[members[0]][1].storage)] = max(
                    contiguous, key=lambda p: (self.items[p][1].numel, -p))
        written = set()
        stats = {"tensors": 0, "aliases": 0, "reduced": 0,
                 "float64_as_f32": sum(t.dtype == "float64" for _, t, _ in self.items)}

        def write(pos):
            name, t, _ = self.items[pos]
            mode = self.reduce.get(name)
            if mode is None:
                w.add_tensor(name, _DTYPE_MAP[t.dtype], t.shape or (),
                             lambda t=t, name=name: _converted_bytes(t, name))
            elif mode in ("f16", "bf16"):
                fn = lowp.to_f16 if mode == "f16" else lowp.to_bf16
                w.add_tensor(name, mode, t.shape,
                             lambda t=t, name=name, fn=fn: fn(_float32_bytes(t, name), name))
                stats["reduced"] += 1
            else:  # int8: the matrix, then its scales (the writer fetches in this order)
                rows, cols = t.shape
                pending = {}

                def quantized(t=t, name=name, rows=rows, cols=cols, pending=pending):
                    q, sc = lowp.quantize_int8(_float32_bytes(t, name), rows, cols,
                                               lowp.INT8_BLOCK, name)
                    pending["scale"] = sc
                    return q

                w.add_tensor(name, "i8", t.shape, quantized)
                w.add_tensor(_scale_name(name), "f32", (rows, -(-cols // lowp.INT8_BLOCK)),
                             lambda pending=pending: pending.pop("scale"))
                stats["reduced"] += 1
            written.add(pos)
            stats["tensors"] += 1

        def alias_ok(pos, anchor, start):
            """A reduced alias must view its anchor reduced the same way
            (int8: whole rows of the same width, so the scales line up)."""
            name, t, _ = self.items[pos]
            aname, a, _ = self.items[anchor]
            mode = self.reduce.get(name)
            if mode != self.reduce.get(aname):
                return False
            if mode != "int8":
                return True
            cols = a.shape[1]
            return len(t.shape) == 2 and t.shape[1] == cols and start % cols == 0

        for pos, (name, t, _) in enumerate(self.items):
            if pos in written:
                continue
            anchor = anchor_of.get(id(t.storage))
            if anchor is None or anchor == pos:
                write(pos)
                continue
            if anchor not in written:
                write(anchor)
            a = self.items[anchor][1]
            start = t.offset - a.offset
            if (t.is_contiguous() and 0 <= start and start + t.numel <= a.numel
                    and alias_ok(pos, anchor, start)):
                w.add_alias(name, self.items[anchor][0], t.shape or (), start)
                stats["aliases"] += 1
                if self.reduce.get(name) == "int8":
                    cols = a.shape[1]
                    nb = -(-cols // lowp.INT8_BLOCK)
                    w.add_alias(_scale_name(name), _scale_name(self.items[anchor][0]),
                                (t.shape[0], nb), start // cols * nb)
                    stats["aliases"] += 1
                written.add(pos)
            else:
                write(pos)
        return stats


# ---------------------------------------------------------------- metadata helpers

def _coerce(value, mtype, what):
    """Check/convert one hyper-parameter value to its metadata type."""
    if mtype == BOOL:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
    elif mtype == I64:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif mtype == F64:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif mtype == STRS:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            return [str(v) for v in value]
    elif mtype == F64S:
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    raise ConvertError(f"{what}: {value!r} is not a valid {mtype}")


_SETTERS = {I64: "set_i64", F64: "set_f64", BOOL: "set_bool", STR: "set_str",
            STRS: "set_str_array", F64S: "set_f64_array"}


def _set(w, key, mtype, value):
    getattr(w, _SETTERS[mtype])(key, value)


def _kwargs_meta(w, prefix, schema, given, where, skip=()):
    """Write every kwarg of ``schema`` as ``prefix.name`` (defaults filled in)."""
    if not isinstance(given, dict):
        raise ConvertError(f"{where}: hyper-parameters are {type(given).__name__}, not a dict")
    names = _kwarg_names(schema)
    for key in given:
        if key not in names:
            raise ConvertError(f"{where}: unknown hyper-parameter {key!r}")
    values = {}
    for name, mtype, default in schema:
        value = given.get(name, default)
        if value is REQUIRED:
            raise ConvertError(f"{where}: required hyper-parameter {name!r} missing")
        values[name] = value
        if name in skip or value is None:
            continue
        _set(w, f"{prefix}.{name}", mtype, _coerce(value, mtype, f"{where}: {name}"))
    return values


def _dvae_meta(w, params, where):
    """vae.* for a DiscreteVAE (kwargs with defaults; normalization split)."""
    values = _kwargs_meta(w, "vae", DVAE_KWARGS, params, where, skip=("normalization",))
    norm = values["normalization"]
    if norm is not None:
        if not (isinstance(norm, (list, tuple)) and len(norm) == 2 and
                all(isinstance(x, (list, tuple)) for x in norm)):
            raise ConvertError(f"{where}: normalization {norm!r} is not (means, stds)")
        channels = values["channels"]
        # DiscreteVAE keeps t[:channels] of each
        w.set_f64_array("vae.normalization.mean",
                        _coerce(list(norm[0])[:channels], F64S, f"{where}: normalization"))
        w.set_f64_array("vae.normalization.std",
                        _coerce(list(norm[1])[:channels], F64S, f"{where}: normalization"))
    return values


def _flatten(prefix, value, out, where):
    """Flatten nested YAML mappings with dots; lists must hold scalars."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out, where)
    elif value is None:
        return  # None hyper-parameters are left out
    elif isinstance(value, list):
        if all(isinstance(v, bool) for v in value) and value:
            raise ConvertError(f"{where}: {prefix}: lists of booleans are not supported")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            out[prefix] = (B.META_I64_ARRAY, value)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            out[prefix] = (B.META_F64_ARRAY, [float(v) for v in value])
        elif all(isinstance(v, str) for v in value):
            out[prefix] = (B.META_STR_ARRAY, value)
        else:
            raise ConvertError(f"{where}: {prefix}: list {value!r} mixes types or nests")
    else:
        out[prefix] = (B.infer_meta_type(value), value)


# ---------------------------------------------------------------- per-kind converters

def _check_entries(inp, used, allowed_skip):
    for key in inp.obj:
        if key not in used and key not in allowed_skip:
            raise ConvertError(f"{inp.path}: unknown checkpoint entry {key!r}")


def _weights(inp, key="weights"):
    weights = inp.obj.get(key)
    if isinstance(weights, str):
        raise ConvertError(f"{inp.path}: '{key}' is a string ({weights[:80]!r}...): "
                           "a DeepSpeed checkpoint; consolidate it into a state dict first")
    if not isinstance(weights, dict):
        raise ConvertError(f"{inp.path}: '{key}' is not a state dict")
    for k, v in weights.items():
        if not isinstance(k, str):
            raise ConvertError(f"{inp.path}: '{key}' has the key {k!r}: tensor names are strings")
        if not isinstance(v, TF.Tensor):
            raise ConvertError(f"{inp.path}: {key}[{k!r}] is not a tensor")
    return weights


def _vqgan_meta(w, config, where, image_size, for_dalle):
    """vae.* from a taming config: model.params flattened, plus VQGanVAE's derivations."""
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("params"), dict):
        raise ConvertError(f"{where}: config has no model.params")
    target = model.get("target")
    if target not in ("taming.models.vqgan.VQModel", "taming.models.vqgan.GumbelVQ"):
        raise ConvertError(f"{where}: model.target {target!r} is not taming's VQModel or GumbelVQ")
    params = model["params"]
    flat = {}
    _flatten("vae", params, flat, where)
    try:
        dd = params["ddconfig"]
        resolution = dd["resolution"]
        attn0 = dd["attn_resolutions"][0]
        n_embed = params["n_embed"]
    except (KeyError, IndexError, TypeError) as e:
        raise ConvertError(f"{where}: config lacks {e} (model.params.ddconfig.resolution, "
                           "attn_resolutions[0] and n_embed are needed)") from None
    # DALLE-pytorch VQGanVAE: f = resolution / attn_resolutions[0],
    # num_layers = int(log2 f), image_size = 256 (hard-coded), num_tokens = n_embed.
    num_layers = int(math.log(resolution / attn0) / math.log(2))
    if image_size is None:
        # inside a DALLE the transformer was built for VQGanVAE's 256; a standalone
        # model is described by its own training resolution (256 for taming's releases)
        image_size = 256 if for_dalle else resolution
    derived = {"vae.target": (B.META_STR, target),
               "vae.image_size": (B.META_I64, int(image_size)),
               "vae.num_layers": (B.META_I64, num_layers),
               "vae.num_tokens": (B.META_I64, int(n_embed)),
               "vae.channels": (B.META_I64, 3),
               "vae.is_gumbel": (B.META_BOOL, target.endswith("GumbelVQ"))}
    for key, (mtype, value) in derived.items():
        if key in flat:
            raise ConvertError(f"{where}: model.params.{key[4:]} clashes with the derived {key}")
        flat[key] = (mtype, value)
    for key, (mtype, value) in flat.items():
        w.set(key, value, mtype)
    return derived["vae.is_gumbel"][1]


def _vqgan_state(plan, sd, where, prefix):
    """Add a VQModel state dict (minus the training loss) under ``prefix``."""
    for k, t in sd.items():
        if k.startswith("loss."):
            continue  # perceptual loss + discriminator: training only
        if not k.startswith(VQGAN_PREFIXES):
            raise ConvertError(f"{where}: unknown VQGAN state-dict entry {k!r}")
        plan.add(prefix + k, t, where)


def _check_vqgan_quantizer(names, gumbel, where, prefix):
    key = prefix + ("quantize.embed.weight" if gumbel else "quantize.embedding.weight")
    if key not in names:
        raise ConvertError(f"{where}: {key} missing (does the config's model.target "
                           f"match the checkpoint?)")


_OPENAI_FIELDS_ENC = ("n_hid", "n_blk_per_group", "input_channels", "vocab_size")
_OPENAI_FIELDS_DEC = ("n_init", "n_hid", "n_blk_per_group", "output_channels", "vocab_size")


def _openai_shapes(enc_sd, dec_sd, where, enc_prefix="", dec_prefix=""):
    """dall_e attrs fields as the weight shapes imply them (enc, dec dicts)."""
    def shape(sd, key):
        if key not in sd:
            raise ConvertError(f"{where}: dall_e weight {key} missing")
        return sd[key].shape

    def names_under(sd, prefix, depth):
        # distinct path components at `depth` below prefix, e.g. group_1, group_2
        return {k[len(prefix):].split(".")[depth] for k in sd if k.startswith(prefix)}

    e_in = shape(enc_sd, enc_prefix + "blocks.input.w")         # (n_hid, in_ch, 7, 7)
    e_out = shape(enc_sd, enc_prefix + "blocks.output.conv.w")  # (vocab, 8 n_hid, 1, 1)
    d_in = shape(dec_sd, dec_prefix + "blocks.input.w")         # (n_init, vocab, 1, 1)
    d_out = shape(dec_sd, dec_prefix + "blocks.output.conv.w")  # (2 out_ch, n_hid, 1, 1)
    enc = {"n_hid": e_in[0], "input_channels": e_in[1], "vocab_size": e_out[0],
           "n_blk_per_group": len(names_under(enc_sd, enc_prefix + "blocks.group_1.", 0)),
           "group_count": len(names_under(enc_sd, enc_prefix + "blocks.group_", 0))}
    dec = {"n_init": d_in[0], "vocab_size": d_in[1], "n_hid": d_out[1],
           "output_channels": d_out[0] // 2,
           "n_blk_per_group": len(names_under(dec_sd, dec_prefix + "blocks.group_1.", 0)),
           "group_count": len(names_under(dec_sd, dec_prefix + "blocks.group_", 0))}
    return enc, dec


def _openai_dvae_meta(w, enc, dec, where, image_size):
    """vae.* for the dall_e pair (``enc``/``dec``: field dicts)."""
    for field in ("group_count", "n_hid", "n_blk_per_group", "vocab_size"):
        if enc[field] != dec[field]:
            raise ConvertError(f"{where}: encoder and decoder disagree on {field} "
                               f"({enc[field]} vs {dec[field]}): not supported")
    if enc["group_count"] != 4:
        raise ConvertError(f"{where}: group_count {enc['group_count']} (dall_e builds 4 groups)")
    for key in ("group_count", "n_hid", "n_blk_per_group", "vocab_size"):
        w.set_i64(f"vae.{key}", enc[key])
    w.set_i64("vae.input_channels", enc["input_channels"])
    w.set_i64("vae.output_channels", dec["output_channels"])
    w.set_i64("vae.n_init", dec["n_init"])
    if "use_mixed_precision" in enc or "use_mixed_precision" in dec:
        w.set_bool("vae.use_mixed_precision",
                   bool(enc.get("use_mixed_precision")) or bool(dec.get("use_mixed_precision")))
    # What DALLE-pytorch's OpenAIDiscreteVAE assumes (3 max-pools: 8x8 pixels per token).
    w.set_i64("vae.image_size", 256 if image_size is None else image_size)
    w.set_i64("vae.num_layers", 3)
    w.set_i64("vae.num_tokens", enc["vocab_size"])
    w.set_i64("vae.channels", 3)


def _openai_attrs(inp, fields):
    attrs = {}
    for field in fields + ("use_mixed_precision",):
        v = inp.obj.get(field)
        if v is not None:
            attrs[field] = v
    attrs.setdefault("group_count", inp.obj.get("group_count", 4))  # a class attribute
    return attrs


def _convert_openai_dvae(w, plan, enc_in, dec_in, image_size):
    where = f"{enc_in.path} + {dec_in.path}"
    enc_sd = TF.module_state_dict(enc_in.obj)
    dec_sd = TF.module_state_dict(dec_in.obj)
    enc_shapes, dec_shapes = _openai_shapes(enc_sd, dec_sd, where)
    enc = _openai_attrs(enc_in, _OPENAI_FIELDS_ENC)
    dec = _openai_attrs(dec_in, _OPENAI_FIELDS_DEC)
    for name, pickled, shapes in (("encoder", enc, enc_shapes), ("decoder", dec, dec_shapes)):
        for field, value in shapes.items():
            if field in pickled and pickled[field] != value:
                raise ConvertError(f"{where}: {name} {field}={pickled[field]} but its weights "
                                   f"imply {value}")
            pickled.setdefault(field, value)
    _openai_dvae_meta(w, enc, dec, where, image_size)
    for k, t in enc_sd.items():
        plan.add("vae.enc." + k, t, enc_in.path)
    for k, t in dec_sd.items():
        plan.add("vae.dec." + k, t, dec_in.path)
    return f"{enc_in.name} + {dec_in.name} (dall_e Encoder + Decoder)"


def _convert_dalle(w, plan, inp, config, image_size):
    obj = inp.obj
    where = inp.path
    _check_entries(inp, {"hparams", "vae_params", "weights", "vae_class_name"}, TRAINING_ONLY)
    weights = _weights(inp)
    hparams = obj["hparams"]
    values = _kwargs_meta(w, "dalle", DALLE_KWARGS, hparams, f"{where}: hparams",
                          skip=("attn_types",))
    attn = values["attn_types"]
    w.set_str_array("dalle.attn_types",
                    _coerce(("full",) if attn is None else attn, STRS, f"{where}: attn_types"))

    vae_class = obj.get("vae_class_name")
    vae_params = obj.get("vae_params")
    if vae_class is None:  # checkpoints older than vae_class_name
        if vae_params is not None:
            vae_class = "DiscreteVAE"
        elif any(k.startswith("vae.model.") for k in weights):
            vae_class = "VQGanVAE"
        else:
            vae_class = "OpenAIDiscreteVAE"
    if vae_class == "DiscreteVAE":
        w.set_str("vae.kind", "dvae")
        if vae_params is None:
            raise ConvertError(f"{where}: vae_class_name DiscreteVAE but vae_params is None")
        if image_size is not None:
            raise ConvertError("--image-size does not apply to a DiscreteVAE (vae_params has it)")
        _dvae_meta(w, vae_params, f"{where}: vae_params")
        needed = "vae.codebook.weight"
    elif vae_class == "OpenAIDiscreteVAE":
        w.set_str("vae.kind", "openai_dvae")
        enc, dec = _openai_shapes(weights, weights, where, "vae.enc.", "vae.dec.")
        _openai_dvae_meta(w, enc, dec, where, image_size)
        needed = "vae.enc.blocks.input.w"
    elif vae_class == "VQGanVAE":
        w.set_str("vae.kind", "vqgan")
        if config is None:
            raise ConvertError(f"{where}: the DALLE uses a VQGAN: give its yaml with --config")
        gumbel = _vqgan_meta(w, config.obj, f"{config.path}", image_size, for_dalle=True)
        _check_vqgan_quantizer(weights, gumbel, where, "vae.model.")
        needed = None
    else:
        raise ConvertError(f"{where}: unknown vae_class_name {vae_class!r}")
    if needed and needed not in weights:
        raise ConvertError(f"{where}: weights lack {needed} ({vae_class} expected)")
    for k, t in weights.items():
        if k.startswith("vae.model.loss."):
            continue  # VQGAN training loss (LPIPS + discriminator)
        plan.add(k, t, where)
    version = obj.get("version")
    return f"{inp.name} (DALLE-pytorch DALLE + {vae_class}" + (
        f", DALLE-pytorch {version})" if isinstance(version, str) else ")")


def _convert_dvae(w, plan, inp):
    _check_entries(inp, {"hparams", "weights"}, TRAINING_ONLY)
    weights = _weights(inp)
    _dvae_meta(w, inp.obj["hparams"], f"{inp.path}: hparams")
    for k, t in weights.items():
        if not k.startswith(("codebook.", "encoder.", "decoder.")):
            raise ConvertError(f"{inp.path}: unknown DiscreteVAE weight {k!r}")
        plan.add("vae." + k, t, inp.path)
    return f"{inp.name} (DALLE-pytorch DiscreteVAE)"


def _convert_clip(w, plan, inp):
    _check_entries(inp, {"hparams", "weights"}, TRAINING_ONLY)
    weights = _weights(inp)
    _kwargs_meta(w, "clip", CLIP_KWARGS, inp.obj["hparams"], f"{inp.path}: hparams")
    for k, t in weights.items():
        plan.add(k, t, inp.path)
    return f"{inp.name} (DALLE-pytorch CLIP)"


def _torchscript_heads(inp):
    """Attention head counts recorded in a traced CLIP's code, by module path.

    A traced nn.MultiheadAttention computes ``head_dim = embed_dim // num_heads``
    with num_heads as a constant (``CONSTANTS.cN`` or a literal); reading it back
    recovers heads that differ from build_model's ``width // 64`` guess.
    """
    consts = inp.tf.constants or ()
    heads = {}
    pat = re.compile(r"head_dim\d*\s*=\s*torch\.(?:div|floor_divide)\(\s*embed_dim\d*\s*,\s*"
                     r"(?:CONSTANTS\.c(\d+)|(\d+))")
    for path, mod in TF.torchscript_modules(inp.tf):
        if mod.name != "MultiheadAttention":
            continue
        src = inp.tf.code.get(mod.module.replace(".", "/") + ".py", "")
        m = pat.search(src)
        if not m:
            continue
        if m.group(2):
            heads[path] = int(m.group(2))
        else:
            idx = int(m.group(1))
            c = consts[idx] if idx < len(consts) else None
            if isinstance(c, TF.Tensor) and c.numel == 1 and c.dtype.startswith("int"):
                heads[path] = int(c.values()[0])
    return heads


def _convert_openai_clip(w, plan, inp, heads_override):
    if inp.kind == "openai_clip_jit":
        sd = TF.torchscript_state_dict(inp.tf)
        traced = _torchscript_heads(inp)
        what = "OpenAI CLIP TorchScript"
    else:
        sd = inp.obj
        traced = {}
        what = "OpenAI CLIP state dict"
    where = inp.path
    if "visual.proj" not in sd:
        raise ConvertError(f"{where}: a ModifiedResNet image tower (no visual.proj): "
                           "only ViT CLIP models are supported yet")

    def shape(key):
        if key not in sd:
            raise ConvertError(f"{where}: {key} missing")
        return sd[key].shape

    # clip.model.build_model's derivations
    vision_width = shape("visual.conv1.weight")[0]
    vision_layers = len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
    vision_patch_size = shape("visual.conv1.weight")[-1]
    grid_size = round((shape("visual.positional_embedding")[0] - 1) ** 0.5)
    image_resolution = vision_patch_size * grid_size
    embed_dim = shape("text_projection")[1]
    context_length = shape("positional_embedding")[0]
    vocab_size = shape("token_embedding.weight")[0]
    transformer_width = shape("ln_final.weight")[0]
    transformer_heads = transformer_width // 64
    transformer_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")})
    vision_heads = vision_width // 64   # clip.model.CLIP: vision_heads = vision_width // 64
    source_note = ""
    t_heads = traced.get("transformer.resblocks.0.attn")
    if t_heads and transformer_width % t_heads == 0 and t_heads != transformer_heads:
        transformer_heads, source_note = t_heads, ", text heads read from the traced code"
    if heads_override is not None:
        transformer_heads, source_note = heads_override, ", text heads from --clip-heads"
    if transformer_heads < 1 or transformer_width % transformer_heads:
        raise ConvertError(f"{where}: transformer width {transformer_width} is not divisible "
                           f"by {transformer_heads} heads")
    if vision_heads < 1:
        raise ConvertError(f"{where}: vision width {vision_width} < 64 gives no attention head")
    meta = {"embed_dim": embed_dim, "image_resolution": image_resolution,
            "vision_layers": vision_layers, "vision_width": vision_width,
            "vision_patch_size": vision_patch_size, "context_length": context_length,
            "vocab_size": vocab_size, "transformer_width": transformer_width,
            "transformer_heads": transformer_heads, "transformer_layers": transformer_layers,
            "vision_heads": vision_heads}
    for key, value in meta.items():
        w.set_i64(f"clip.{key}", value)
    w.set_str("clip.vision", "vit")
    # OpenAI's release files carry these as scalars; build_model drops them.
    expect = {"input_resolution": image_resolution, "context_length": context_length,
              "vocab_size": vocab_size}
    for k, t in sd.items():
        if k in OPENAI_CLIP_SCALARS:
            if t.numel == 1 and int(t.values()[0]) != expect[k]:
                raise ConvertError(f"{where}: {k} = {t.values()[0]} disagrees with the "
                                   f"weights ({expect[k]})")
            continue
        plan.add(k, t, where)
    return f"{inp.name} ({what}{source_note})"


def _convert_vqgan(w, plan, inp, config, image_size):
    if config is None:
        raise ConvertError(f"{inp.path}: a taming-transformers checkpoint needs its yaml (--config)")
    _check_entries(inp, {"state_dict"}, LIGHTNING_TRAINING_ONLY)
    sd = _weights(inp, "state_dict")
    gumbel = _vqgan_meta(w, config.obj, config.path, image_size, for_dalle=False)
    _vqgan_state(plan, sd, inp.path, "vae.model.")
    _check_vqgan_quantizer(plan.names(), gumbel, inp.path, "vae.model.")
    target = config.obj["model"]["target"].rsplit(".", 1)[-1]
    return f"{inp.name} + {config.name} (taming-transformers {target})"


# ---------------------------------------------------------------- driver

def _read_bpe(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConvertError(f"{path}: {e.strerror}") from None
    # The released file's header line is '"bpe_simple_vocab_16e6.txt#version: 0.2'
    # (a stray file name before the marker); upstream simply skips line 1.
    first = data.split(b"\n", 1)[0]
    if b"#version" not in first:
        raise ConvertError(f"{path}: not a CLIP BPE merges file (no '#version' header line)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError(f"{path}: not UTF-8 ({e})") from None
    lines = text.split("\n")[1:]
    bad = next((i for i, line in enumerate(lines, 2) if line and len(line.split(" ")) != 2), None)
    if bad is not None:
        raise ConvertError(f"{path}:{bad}: a merge line must be two space-separated symbols")
    return data


def _plan_reduction(w, plan, dtype):
    """Mark the DALLE matrices --dtype reduces, and record it in the metadata."""
    if dtype in (None, "f32"):
        return
    for name, t, _ in plan.items:
        if reducible(name, t):
            plan.reduce[name] = dtype
    w.set_str("weights.dtype", dtype)
    if dtype == "int8":
        w.set_i64("weights.int8_block", lowp.INT8_BLOCK)


def convert(inputs, output, bpe=None, config=None, image_size=None, level=3,
            clip_heads=None, dtype="f32") -> dict:
    """Convert checkpoint files into one bundle at ``output``.

    ``inputs``: paths (kinds recognised from contents; a taming yaml or a BPE
    merges file may be among them). ``bpe``: CLIP BPE merges to embed.
    ``config``: taming yaml. ``image_size``: overrides vae.image_size for the
    OpenAI dVAE / VQGAN. ``level``: zstd level (0 = store raw).
    ``clip_heads``: text-transformer heads of an OpenAI CLIP (state dicts do
    not record it; build_model assumes width // 64).
    ``dtype``: storage of the DALLE transformer's large matrices: "f32"
    (default: as in the checkpoint), "f16", "bf16" or "int8" (per-block
    scales, block lowp.INT8_BLOCK); see docs/converter.md.

    Returns a summary dict (kind, tensors, aliases, bytes).
    """
    loaded = [identify(p) for p in inputs]
    if config is not None:
        cfg = identify(config)
        if cfg.kind != "vqgan_config":
            raise ConvertError(f"{config}: --config expects a taming-transformers yaml")
        loaded.append(cfg)
    by_kind = collections.defaultdict(list)
    for inp in loaded:
        by_kind[inp.kind].append(inp)
    for kind, items in by_kind.items():
        if len(items) > 1:
            raise ConvertError(f"{items[1].path}: a second {kind.replace('_', ' ')} input "
                               f"(first: {items[0].path})")
    if "bpe" in by_kind:
        if bpe is not None:
            raise ConvertError(f"{by_kind['bpe'][0].path}: a BPE file given twice (also --bpe)")
        bpe = by_kind.pop("bpe")[0].path
    cfg = by_kind.pop("vqgan_config", [None])[0]
    models = {k: v[0] for k, v in by_kind.items()}
    if image_size is not None and image_size < 1:
        raise ConvertError(f"--image-size {image_size}: must be positive")

    combos = {
        frozenset(["dalle_pytorch_dalle"]): "dalle",
        frozenset(["dalle_pytorch_vae"]): "dvae",
        frozenset(["openai_encoder", "openai_decoder"]): "openai_dvae",
        frozenset(["taming"]): "vqgan",
        frozenset(["dalle_pytorch_clip"]): "clip",
        frozenset(["openai_clip_state"]): "openai_clip",
        frozenset(["openai_clip_jit"]): "openai_clip",
        frozenset(): "tokenizer",
    }
    kind = combos.get(frozenset(models))
    if kind is None:
        names = ", ".join(f"{i.path} ({i.kind})" for i in models.values())
        if set(models) & {"openai_encoder", "openai_decoder"} and len(models) == 1:
            raise ConvertError(f"{names}: the OpenAI dVAE needs both encoder.pkl and decoder.pkl")
        raise ConvertError(f"cannot combine these inputs into one bundle: {names}")
    if kind == "tokenizer" and bpe is None:
        raise ConvertError("nothing to convert: give a checkpoint or --bpe")
    if cfg is not None and kind not in ("vqgan", "dalle"):
        raise ConvertError(f"{cfg.path}: a VQGAN config is only used with a VQGAN or a DALLE")
    if image_size is not None and kind not in ("openai_dvae", "vqgan", "dalle"):
        raise ConvertError("--image-size only applies to the OpenAI dVAE and VQGAN")
    if clip_heads is not None and kind != "openai_clip":
        raise ConvertError("--clip-heads only applies to OpenAI CLIP checkpoints")
    if dtype not in DTYPES:
        raise ConvertError(f"--dtype {dtype}: one of {', '.join(DTYPES)}")
    if dtype != "f32" and kind != "dalle":
        raise ConvertError(f"--dtype {dtype} only applies to DALLE checkpoints (the VAE and "
                           "CLIP are kept in float32)")

    w = B.BundleWriter(kind, level=level)
    plan = TensorPlan()
    if kind == "dalle":
        source = _convert_dalle(w, plan, models["dalle_pytorch_dalle"], cfg, image_size)
        if cfg is not None and w.get_meta("vae.kind") != "vqgan":
            raise ConvertError(f"{cfg.path}: the DALLE's VAE is not a VQGAN")
    elif kind == "dvae":
        source = _convert_dvae(w, plan, models["dalle_pytorch_vae"])
    elif kind == "openai_dvae":
        source = _convert_openai_dvae(w, plan, models["openai_encoder"], models["openai_decoder"],
                                      image_size)
    elif kind == "vqgan":
        source = _convert_vqgan(w, plan, models["taming"], cfg, image_size)
    elif kind == "clip":
        source = _convert_clip(w, plan, models["dalle_pytorch_clip"])
    elif kind == "openai_clip":
        source = _convert_openai_clip(w, plan, next(iter(models.values())), clip_heads)
    else:
        source = ""
    if bpe is not None:
        data = _read_bpe(bpe)
        w.set_str("tokenizer.kind", "clip_bpe")
        plan.add("tokenizer.bpe_merges", _bytes_tensor(data), bpe)
        source = (source + "; " if source else "") + f"{os.path.basename(bpe)} (CLIP BPE merges)"
    w.set_str("general.source", source)
    w.set_str("general.converter", CONVERTER)
    _plan_reduction(w, plan, dtype)
    stats = plan.emit(w)
    try:
        w.write(output)
    except OSError as e:
        raise ConvertError(f"{output}: {e.strerror or e}") from None
    except lowp.LowpError as e:
        raise ConvertError(f"--dtype {dtype}: {e}") from None
    return {"kind": kind, "output": output, "bytes": os.path.getsize(output), **stats}


def _bytes_tensor(data: bytes) -> TF.Tensor:
    st = TF.Storage("bpe", "uint8", len(data), "cpu", lambda: data)
    return TF.Tensor(st, 0, (len(data),), (1,))


# ---------------------------------------------------------------- --info

def info(path, out=None) -> None:
    """Print a bundle's kind, metadata and tensor directory."""
    out = out or sys.stdout
    b = B.Bundle.open(path)
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"{path}: libdalle bundle {b.version[0]}.{b.version[1]}, kind {b.kind}, "
      f"{len(b.meta)} metadata entries, {len(b.tensors)} tensors")
    p("metadata:")
    for key, value in b.meta.items():
        shown = repr(value)
        if len(shown) > 100:
            shown = shown[:97] + "..."
        p(f"  {key:40s} {B.META_TYPES[b.meta_types[key]]:12s} {shown}")
    p("tensors:")
    total = stored = 0
    for e in b.tensors:
        shape = "x".join(map(str, e.shape)) or "scalar"
        if e.codec == B.CODEC_ALIAS:
            where = f"alias of {b.tensors[e.target].name} @ {e.element_offset}"
        else:
            where = f"{B.CODEC_NAMES[e.codec]} {e.stored_size} bytes"
            total += e.nbytes
            stored += e.stored_size
        p(f"  {e.name:60s} {e.dtype:4s} {shape:16s} {where}")
    p(f"data: {total} bytes decoded, {stored} stored")


# ---------------------------------------------------------------- command line

def _parser():
    ap = argparse.ArgumentParser(
        prog="python3 -m dalle.convert",
        description="Convert DALLE-pytorch / OpenAI dVAE / OpenAI CLIP / taming VQGAN "
                    "checkpoints into a libdalle bundle, or show a bundle (--info).")
    ap.add_argument("inputs", nargs="*", metavar="INPUT",
                    help="checkpoint files (recognised by content); a taming yaml or a "
                         "BPE merges file may be given here too")
    ap.add_argument("-o", "--output", metavar="OUT.dalle", help="bundle to write")
    ap.add_argument("--bpe", metavar="MERGES.txt",
                    help="CLIP BPE merges file (bpe_simple_vocab_16e6.txt) to embed")
    ap.add_argument("--config", metavar="VQGAN.yaml", help="taming-transformers model config")
    ap.add_argument("--image-size", type=int, metavar="N",
                    help="vae.image_size for the OpenAI dVAE (default 256) or a VQGAN "
                         "(default: the config's resolution; 256 inside a DALLE)")
    ap.add_argument("--clip-heads", type=int, metavar="N",
                    help="OpenAI CLIP text-transformer heads (default: read from a "
                         "TorchScript trace, else width // 64 as clip.build_model)")
    ap.add_argument("--level", type=int, default=3, metavar="N",
                    help="zstd level 1-22 (default 3); 0 stores tensors uncompressed")
    ap.add_argument("--dtype", default="f32", choices=DTYPES,
                    help="storage of a DALLE transformer's large matrices (to_qkv, to_out, "
                         "feed-forward, to_logits, token embeddings): f32 (default, as in "
                         "the checkpoint), f16, bf16 (round to nearest even) or int8 "
                         f"(symmetric, one float32 scale per {lowp.INT8_BLOCK} elements of "
                         "a row)")
    ap.add_argument("--info", metavar="BUNDLE", help="print a bundle's contents and exit")
    ap.add_argument("--version", action="version", version=CONVERTER)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.info:
            if args.inputs or args.output:
                raise ConvertError("--info takes only the bundle")
            info(args.info)
            return 0
        if not args.output:
            raise ConvertError("no output: give -o OUT.dalle")
        if not 0 <= args.level <= 22:
            raise ConvertError(f"--level {args.level}: must be 0..22")
        s = convert(args.inputs, args.output, bpe=args.bpe, config=args.config,
                    image_size=args.image_size, level=args.level, clip_heads=args.clip_heads,
                    dtype=args.dtype)
        print(f"{s['output']}: {s['kind']} bundle, {s['tensors']} tensors + {s['aliases']} "
              f"aliases, {s['bytes']} bytes")
        if s["reduced"]:
            print(f"note: {s['reduced']} matrices stored as {args.dtype}")
        if s["float64_as_f32"]:
            print(f"note: {s['float64_as_f32']} float64 tensors were stored as f32")
        return 0
    except (ConvertError, B.BundleError, TF.TorchFileError, yamlmini.YamlError) as e:
        # one line: names and values quoted from a damaged file may hold control characters
        print(f"dalle.convert: error: {TF.printable(str(e))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `--info ... | head`
        return 0
    except OSError as e:
        print(f"dalle.convert: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
