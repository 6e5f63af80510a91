"""The checkpoint converter (bindings/python/dalle/convert.py).

* Every golden checkpoint (../shared/golden, or $DALLE_GOLDEN) is converted
  and compared with the checkpoint read independently: a separate minimal
  unpickler here finds each tensor's storage in the zip, and the bundle's
  bytes must equal the storage bytes at the tensor's offset. Shared storages
  must come out as aliases, unique storages must match case.json's
  param_coverage, and the metadata must match case.json's hparams /
  vae_params / params / config.
* Synthetic checkpoints, written here without PyTorch (a fake ``torch``
  module lets pickle emit the right globals), cover float64, non-contiguous
  views, aliases at an element offset, the legacy pre-1.6 format, VQGAN /
  OpenAI-dVAE DALLEs and the error paths.

Run: python3 -m unittest discover -s tests/python
"""

import collections
import contextlib
import io
import json
import math
import os
import pickle
import struct
import sys
import tempfile
import types
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
sys.path.insert(0, HERE)

from dalle import bundle as B  # noqa: E402
from dalle import convert as C  # noqa: E402
import npy  # noqa: E402

GOLDEN = os.environ.get("DALLE_GOLDEN") or os.path.join(REPO, "..", "shared", "golden")
HAVE_GOLDEN = os.path.isfile(os.path.join(GOLDEN, "dalle_full", "case.json"))
SKIP_GOLDEN = f"golden cases not found at {GOLDEN} (set DALLE_GOLDEN)"
BPE = os.path.join(GOLDEN, "..", "vocab", "bpe_simple_vocab_16e6.txt")

ITEMSIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
            "LongStorage": 8, "IntStorage": 4, "ByteStorage": 1, "CharStorage": 1,
            "BoolStorage": 1, "ShortStorage": 2}

# DALLE-pytorch 58c1e1a: DALLE.__init__ keyword arguments (minus vae)
DALLE_KWARGS = ["dim", "num_text_tokens", "text_seq_len", "depth", "heads", "dim_head",
                "reversible", "attn_dropout", "ff_dropout", "sparse_attn", "attn_types",
                "loss_img_weight", "stable", "sandwich_norm", "shift_tokens", "rotary_emb",
                "shared_attn_ids", "shared_ff_ids", "share_input_output_emb",
                "optimize_for_inference"]
DVAE_KWARGS = ["image_size", "num_tokens", "codebook_dim", "num_layers", "num_resnet_blocks",
               "hidden_dim", "channels", "smooth_l1_loss", "temperature", "straight_through",
               "reinmax", "kl_div_loss_weight"]
CLIP_KWARGS = ["dim_text", "dim_image", "dim_latent", "num_text_tokens", "text_enc_depth",
               "text_seq_len", "text_heads", "num_visual_tokens", "visual_enc_depth",
               "visual_heads", "visual_image_size", "visual_patch_size", "channels"]


# ---------------------------------------------------------------- independent reader

class RawTensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    @property
    def numel(self):
        return math.prod(self.shape)

    def contiguous(self):
        expect = 1
        for d, s in zip(reversed(self.shape), reversed(self.stride)):
            if d != 1 and s != expect:
                return False
            expect *= d
        return True


class RawObject:
    """Any other pickled object: remembers its class and state."""

    def __new__(cls, *args):
        self = object.__new__(cls)
        self.state = None
        return self

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        self.state = state


class RawUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("builtins", "set"), ("__builtin__", "set")):
            return set
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda st, off, size, stride, *rest: RawTensor(st, off, size, stride)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *rest: data
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "torch":
            return str
        return type(name, (RawObject,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        return pid[1], str(pid[2])  # (storage type, key)


class RawCheckpoint:
    """A torch.save / TorchScript zip read with the minimal unpickler above."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path)
        pkl = next(n for n in self.zip.namelist() if n.endswith("/data.pkl"))
        self.prefix = pkl[:-len("data.pkl")]
        self.obj = RawUnpickler(io.BytesIO(self.zip.read(pkl))).load()

    def tensor_bytes(self, t: RawTensor) -> bytes:
        stype, key = t.storage
        size = ITEMSIZE[stype]
        raw = self.zip.read(f"{self.prefix}data/{key}")
        assert t.contiguous()
        return raw[t.offset * size:(t.offset + t.numel) * size]


def raw_module_tensors(module, prefix=""):
    """Parameters and buffers of a pickled nn.Module, by dotted name."""
    out = collections.OrderedDict()
    st = module.state
    for kind in ("_parameters", "_buffers"):
        for k, v in st[kind].items():
            if v is not None:
                out[prefix + k] = v
    for k, m in st["_modules"].items():
        out.update(raw_module_tensors(m, f"{prefix}{k}."))
    return out


def raw_script_tensors(obj, prefix=""):
    """Every tensor attribute of a TorchScript module tree."""
    out = collections.OrderedDict()
    for k, v in obj.state.items():
        if isinstance(v, RawTensor):
            out[prefix + k] = v
        elif isinstance(v, RawObject):
            out.update(raw_script_tensors(v, f"{prefix}{k}."))
    return out


# ---------------------------------------------------------------- fake torch writer

class FakeStorage:
    def __init__(self, typename, values=None, data=None):
        fmt = {"FloatStorage": "f", "DoubleStorage": "d", "LongStorage": "q", "HalfStorage": "e",
               "IntStorage": "i", "ByteStorage": "B", "BoolStorage": "?", "ShortStorage": "h",
               "CharStorage": "b"}.get(typename)
        self.typename = typename
        self.data = data if data is not None else struct.pack(f"<{len(values)}{fmt}", *values)
        self.numel = len(self.data) // ITEMSIZE[typename]


class FakeTensor:
    def __init__(self, storage, shape, stride=None, offset=0, param=True):
        if stride is None:
            stride, acc = [], 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
        self.storage, self.shape, self.stride = storage, tuple(shape), tuple(stride)
        self.offset, self.param = offset, param

    def __reduce__(self):
        torch_utils = sys.modules["torch._utils"]
        rebuilt = (torch_utils._rebuild_tensor_v2,
                   (self.storage, self.offset, self.shape, self.stride, False,
                    collections.OrderedDict()))
        if not self.param:
            return rebuilt
        plain = FakeTensor(self.storage, self.shape, self.stride, self.offset, param=False)
        return torch_utils._rebuild_parameter, (plain, True, collections.OrderedDict())


def tensor(values, shape=None, typename="FloatStorage"):
    shape = shape or [len(values)]
    return FakeTensor(FakeStorage(typename, values), shape)


def zeros(*shape):
    return tensor([0.0] * math.prod(shape), list(shape))


@contextlib.contextmanager
def fake_torch():
    """sys.modules entries so pickle can name torch's globals without torch."""
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ITEMSIZE:
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*a):
        raise AssertionError("never called")

    def _rebuild_parameter(*a):
        raise AssertionError("never called")

    for f in (_rebuild_tensor_v2, _rebuild_parameter):
        f.__module__, f.__qualname__ = "torch._utils", f.__name__
        setattr(utils, f.__name__, f)
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _StoragePickler(pickle.Pickler):
    def __init__(self, f, torch, legacy):
        super().__init__(f, protocol=2)
        self.torch, self.legacy, self.keys = torch, legacy, {}

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            key = self.keys.setdefault(id(obj), (str(len(self.keys)), obj))[0]
            pid = ("storage", getattr(self.torch, obj.typename), key, "cpu", obj.numel)
            return pid + (None,) if self.legacy else pid
        return None


def save_zip(path, obj):
    """torch.save's zip layout (archive/data.pkl + archive/data/<key>)."""
    with fake_torch() as torch:
        buf = io.BytesIO()
        p = _StoragePickler(buf, torch, legacy=False)
        p.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, st in p.keys.values():
            z.writestr(f"archive/data/{key}", st.data)
        z.writestr("archive/version", "3\n")


def save_legacy(path, obj):
    """The pre-1.6 stream: magic, protocol, sys info, object, keys, storages."""
    with fake_torch() as torch:
        buf = io.BytesIO()
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, buf, protocol=2)
        p = _StoragePickler(buf, torch, legacy=True)
        p.dump(obj)
        keys = [k for k, _ in p.keys.values()]
        pickle.dump(keys, buf, protocol=2)
        for key, st in p.keys.values():
            buf.write(struct.pack("<q", st.numel) + st.data)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


# ---------------------------------------------------------------- helpers

def floats(data, dtype="f32"):
    fmt = {"f32": "f", "f64": "d", "i64": "q", "u8": "B"}[dtype]
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt}", data))


class ConvertCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def out(self, name="out.dalle"):
        return os.path.join(self.tmp.name, name)

    def convert(self, inputs, **kw):
        path = self.out()
        C.convert(inputs, path, **kw)
        b = B.Bundle.open(path)
        b.verify()
        return b

    def assertConvertError(self, fragments, inputs, **kw):
        with self.assertRaises(C.ConvertError) as cm:
            C.convert(inputs, self.out("err.dalle"), **kw)
        for frag in fragments:
            self.assertIn(frag, str(cm.exception))
        return cm.exception


def golden(*parts):
    return os.path.join(GOLDEN, *parts)


def case_json(case):
    with open(golden(case, "case.json")) as f:
        return json.load(f)


def expected_meta_value(value):
    """A hyper-parameter as the bundle stores it."""
    if isinstance(value, (list, tuple)):
        return [str(v) if not isinstance(v, float) else v for v in value]
    return value


# ---------------------------------------------------------------- golden cases

@unittest.skipUnless(HAVE_GOLDEN, SKIP_GOLDEN)
class GoldenCheckpoints(ConvertCase):

    def check_tensors(self, b, raw, tensors, prefix=""):
        """Names, shapes, bytes and aliasing of ``tensors`` (name -> RawTensor)."""
        by_storage = collections.defaultdict(list)
        for name, t in tensors.items():
            by_storage[t.storage].append(name)
        names = [e.name for e in b.tensors if not e.name.startswith("tokenizer.")]
        self.assertEqual(sorted(names), sorted(prefix + k for k in tensors))
        for name, t in tensors.items():
            e = b.tensor(prefix + name)
            self.assertEqual(e.shape, t.shape, name)
            self.assertEqual(e.dtype, "f32", name)
            self.assertEqual(b.read(prefix + name), raw.tensor_bytes(t), name)
            shared = by_storage[t.storage]
            if e.codec == B.CODEC_ALIAS:
                target = b.tensors[e.target].name[len(prefix):]
                self.assertIn(target, shared, f"{name} aliases a tensor of another storage")
                self.assertEqual(e.element_offset, t.offset - tensors[target].offset)
            elif len(shared) > 1:
                # the other members must be aliases of this one
                for other in shared:
                    if other != name:
                        self.assertEqual(b.tensor(prefix + other).codec, B.CODEC_ALIAS, other)
        return by_storage

    def check_coverage(self, b, coverage, skip=(), prefix=""):
        stored = [e for e in b.tensors if e.codec != B.CODEC_ALIAS
                  and e.name.startswith(prefix) and e.name not in skip
                  and not e.name.startswith("tokenizer.")]
        self.assertEqual(len(stored), coverage["parameter_tensors"])
        self.assertEqual(sum(e.numel for e in stored), coverage["elements"])

    def check_dalle(self, case, aliases):
        cj = case_json(case)
        b = self.convert([golden(case, "dalle.pt")])
        raw = RawCheckpoint(golden(case, "dalle.pt"))
        self.assertEqual(b.kind, "dalle")
        self.check_tensors(b, raw, raw.obj["weights"])
        self.assertEqual(sum(e.codec == B.CODEC_ALIAS for e in b.tensors), aliases)
        # transformer.pos_emb is the rotary buffer: not a parameter
        self.check_coverage(b, cj["checks"]["param_coverage"], skip=("transformer.pos_emb",))
        hp = cj["hparams"]
        for key, value in hp.items():
            if value is None:
                self.assertNotIn(f"dalle.{key}", b.meta)
            else:
                self.assertEqual(b.meta[f"dalle.{key}"], expected_meta_value(value), key)
        present = {k[len("dalle."):] for k in b.meta if k.startswith("dalle.")}
        self.assertEqual(present, {k for k in DALLE_KWARGS if hp.get(k, 0) is not None})
        self.assertIs(b.meta["dalle.sandwich_norm"], hp.get("sandwich_norm", False))
        self.assertIs(b.meta["dalle.optimize_for_inference"], False)
        self.assertEqual(b.meta_types["dalle.loss_img_weight"], B.META_F64)
        self.assertEqual(b.meta["vae.kind"], "dvae")
        for key, value in cj["vae_params"].items():
            self.assertEqual(b.meta[f"vae.{key}"], value, key)
        self.assertEqual(b.meta["vae.normalization.mean"], [0.5] * 3)
        self.assertEqual(b.meta["vae.normalization.std"], [0.5] * 3)
        self.assertEqual(b.meta["general.converter"], "dalle.convert 1.0.0")
        self.assertIn("DiscreteVAE", b.meta["general.source"])
        return b

    def test_dalle_full(self):
        self.check_dalle("dalle_full", aliases=0)

    def test_dalle_cfg(self):
        self.check_dalle("dalle_cfg", aliases=0)

    def test_dalle_variants(self):
        b = self.check_dalle("dalle_variants", aliases=12)
        e = b.tensor("text_emb.linear.weight")
        self.assertEqual(b.tensors[e.target].name, "to_logits.1.weight")
        self.assertEqual(b.meta["dalle.attn_types"], ["full", "axial_row", "axial_col", "conv_like"])
        self.assertNotIn("dalle.shared_attn_ids", b.meta)

    def test_dalle_shared_attn(self):
        b = self.check_dalle("dalle_shared_attn", aliases=14)
        self.assertEqual(b.meta["dalle.shared_attn_ids"], ["0", "1", "0", "1"])
        qkv = "transformer.layers.layers.{}.0.fn.fn.fn.fn.fn.to_qkv.weight"
        self.assertEqual(b.tensors[b.tensor(qkv.format(2)).target].name, qkv.format(0))

    def test_vae_resblocks(self):
        cj = case_json("vae_resblocks")
        b = self.convert([golden("vae_resblocks", "vae.pt")])
        raw = RawCheckpoint(golden("vae_resblocks", "vae.pt"))
        self.assertEqual(b.kind, "dvae")
        self.check_tensors(b, raw, raw.obj["weights"], prefix="vae.")
        self.assertIn("vae.encoder.0.0.weight", b)
        self.check_coverage(b, cj["checks"]["param_coverage"])
        for key, value in cj["vae_params"].items():
            self.assertEqual(b.meta[f"vae.{key}"], value)
        for key in DVAE_KWARGS:
            self.assertIn(f"vae.{key}", b.meta)
        self.assertEqual(b.meta["vae.temperature"], 0.9)

    def test_clip_dalle_pytorch(self):
        cj = case_json("clip_dalle_pytorch")
        b = self.convert([golden("clip_dalle_pytorch", "clip.pt")])
        raw = RawCheckpoint(golden("clip_dalle_pytorch", "clip.pt"))
        self.assertEqual(b.kind, "clip")
        self.check_tensors(b, raw, raw.obj["weights"])
        self.check_coverage(b, cj["checks"]["param_coverage"])
        self.assertEqual({k[5:] for k in b.meta if k.startswith("clip.")}, set(CLIP_KWARGS))
        for key, value in cj["hparams"].items():
            self.assertEqual(b.meta[f"clip.{key}"], value)
        self.assertEqual(b.meta["clip.num_visual_tokens"], 512)  # upstream default

    def test_openai_clip_state_dict(self):
        cj = case_json("openai_clip")
        path = golden("openai_clip", "clip_state_dict.pt")
        raw = RawCheckpoint(path)
        # build_model's guess: width // 64 heads
        b = self.convert([path])
        self.assertEqual(b.meta["clip.transformer_heads"], 1)
        b = self.convert([path], clip_heads=4)
        self.assertEqual(b.kind, "openai_clip")
        self.check_tensors(b, raw, raw.obj)
        for key, value in cj["config"].items():
            self.assertEqual(b.meta[f"clip.{key}"], value, key)
        self.assertEqual(b.meta["clip.vision"], "vit")
        self.assertEqual(b.meta["clip.vision_heads"], 1)

    def test_openai_clip_torchscript(self):
        cj = case_json("openai_clip")
        path = golden("openai_clip", "clip_jit.pt")
        raw = RawCheckpoint(path)
        b = self.convert([path])
        self.assertEqual(b.kind, "openai_clip")
        self.check_tensors(b, raw, raw_script_tensors(raw.obj))
        for key, value in cj["config"].items():  # heads 4 read from the traced code
            self.assertEqual(b.meta[f"clip.{key}"], value, key)
        sd = RawCheckpoint(golden("openai_clip", "clip_state_dict.pt"))
        self.assertEqual([e.name for e in b.tensors], list(sd.obj))

    def test_openai_dvae(self):
        cj = case_json("openai_dvae")
        enc, dec = golden("openai_dvae", "encoder.pkl"), golden("openai_dvae", "decoder.pkl")
        b = self.convert([dec, enc], image_size=cj["params"]["image_size"])
        self.assertEqual(b.kind, "openai_dvae")
        raw_enc, raw_dec = RawCheckpoint(enc), RawCheckpoint(dec)
        enc_t, dec_t = raw_module_tensors(raw_enc.obj), raw_module_tensors(raw_dec.obj)
        self.assertEqual(sorted(e.name for e in b.tensors),
                         sorted(["vae.enc." + k for k in enc_t] + ["vae.dec." + k for k in dec_t]))
        for k, t in enc_t.items():
            self.assertEqual(b.read("vae.enc." + k), raw_enc.tensor_bytes(t), k)
        for k, t in dec_t.items():
            self.assertEqual(b.read("vae.dec." + k), raw_dec.tensor_bytes(t), k)
        self.assertIn("vae.enc.blocks.input.w", b)
        self.check_coverage(b, cj["checks"]["param_coverage_encoder"], prefix="vae.enc.")
        self.check_coverage(b, cj["checks"]["param_coverage_decoder"], prefix="vae.dec.")
        p = cj["params"]
        for key in ("group_count", "n_hid", "n_blk_per_group", "vocab_size", "n_init",
                    "input_channels", "output_channels", "image_size"):
            self.assertEqual(b.meta[f"vae.{key}"], p[key], key)
        self.assertEqual(b.meta["vae.num_tokens"], p["vocab_size"])
        self.assertEqual(b.meta["vae.num_layers"], 3)
        self.assertEqual(p["image_size"] // 2 ** b.meta["vae.num_layers"], p["token_grid"])
        self.assertIs(b.meta["vae.use_mixed_precision"], False)
        # without --image-size: DALLE-pytorch's OpenAIDiscreteVAE assumption
        self.assertEqual(self.convert([enc, dec]).meta["vae.image_size"], 256)

    def test_openai_dvae_needs_both(self):
        self.assertConvertError(["encoder.pkl", "needs both"], [golden("openai_dvae", "encoder.pkl")])

    def test_vqgan(self):
        ckpt, yaml = golden("vqgan", "vqgan.ckpt"), golden("vqgan", "vqgan.yaml")
        b = self.convert([ckpt], config=yaml)
        raw = RawCheckpoint(ckpt)
        self.assertEqual(b.kind, "vqgan")
        self.check_tensors(b, raw, raw.obj["state_dict"], prefix="vae.model.")
        self.assertIn("vae.model.encoder.conv_in.weight", b)
        self.assertIn("vae.model.quantize.embedding.weight", b)
        m = b.meta
        self.assertEqual(m["vae.target"], "taming.models.vqgan.VQModel")
        self.assertEqual(m["vae.ddconfig.ch_mult"], [1, 2])
        self.assertEqual(m["vae.ddconfig.attn_resolutions"], [16])
        self.assertEqual(m["vae.ddconfig.resolution"], 32)
        self.assertIs(m["vae.ddconfig.double_z"], False)
        self.assertEqual(m["vae.ddconfig.dropout"], 0.0)
        self.assertEqual(m["vae.n_embed"], 64)
        self.assertEqual(m["vae.embed_dim"], 16)
        self.assertEqual(m["vae.lossconfig.target"], "torch.nn.Identity")
        self.assertEqual(m["vae.num_tokens"], 64)
        self.assertEqual(m["vae.num_layers"], 1)  # log2(32 / 16), as VQGanVAE
        self.assertEqual(m["vae.image_size"], 32)
        self.assertIs(m["vae.is_gumbel"], False)
        grid = npy.load(golden("vqgan", "codebook_indices.npy")).shape[1]
        self.assertEqual((m["vae.image_size"] // 2 ** m["vae.num_layers"]) ** 2, grid)
        # the yaml may also be given as a positional input
        b2 = self.convert([yaml, ckpt])
        self.assertEqual(b2.meta, b.meta)

    def test_vqgan_needs_config(self):
        self.assertConvertError(["vqgan.ckpt", "--config"], [golden("vqgan", "vqgan.ckpt")])

    @unittest.skipUnless(os.path.isfile(BPE), "CLIP BPE merges file not found")
    def test_tokenizer_only(self):
        b = self.convert([], bpe=BPE)
        self.assertEqual(b.kind, "tokenizer")
        with open(BPE, "rb") as f:
            merges = f.read()
        self.assertEqual(b.read("tokenizer.bpe_merges"), merges)
        e = b.tensor("tokenizer.bpe_merges")
        self.assertEqual((e.dtype, e.shape), ("u8", (len(merges),)))
        self.assertEqual(b.meta["tokenizer.kind"], "clip_bpe")
        self.assertEqual([e.name for e in b.tensors], ["tokenizer.bpe_merges"])

    @unittest.skipUnless(os.path.isfile(BPE), "CLIP BPE merges file not found")
    def test_dalle_with_tokenizer(self):
        b = self.convert([golden("dalle_cfg", "dalle.pt")], bpe=BPE)
        self.assertEqual(b.kind, "dalle")
        self.assertEqual(b.meta["tokenizer.kind"], "clip_bpe")
        self.assertIn("tokenizer.bpe_merges", b)

    def test_main_info_and_errors(self):
        out = self.out("cfg.dalle")
        with contextlib.redirect_stdout(io.StringIO()) as so:
            self.assertEqual(C.main([golden("dalle_cfg", "dalle.pt"), "-o", out, "--level", "1"]), 0)
        self.assertIn("dalle bundle", so.getvalue())
        with contextlib.redirect_stdout(io.StringIO()) as so:
            self.assertEqual(C.main(["--info", out]), 0)
        text = so.getvalue()
        self.assertIn("kind dalle", text)
        self.assertIn("dalle.text_seq_len", text)
        self.assertIn("vae.codebook.weight", text)
        with contextlib.redirect_stderr(io.StringIO()) as se:
            self.assertEqual(C.main([golden("vqgan", "vqgan.yaml"), "-o", self.out("x.dalle")]), 1)
        self.assertIn("dalle.convert: error:", se.getvalue())
        with contextlib.redirect_stderr(io.StringIO()) as se:
            self.assertEqual(C.main([golden("dalle_cfg", "case.json"), "-o", self.out("x.dalle")]), 1)
        self.assertIn("case.json", se.getvalue())


# ---------------------------------------------------------------- synthetic checkpoints

def dvae_checkpoint(**extra):
    """A small DiscreteVAE checkpoint exercising storage and dtype corner cases."""
    shared = FakeStorage("FloatStorage", [float(i) for i in range(24)])
    base = FakeStorage("FloatStorage", [float(i) for i in range(6)])
    weights = collections.OrderedDict([
        ("codebook.weight", tensor([0.1 * i for i in range(8)], [4, 2], "DoubleStorage")),
        # a transposed view (non-contiguous): must be materialised in C order
        ("encoder.0.weight", FakeTensor(base, [3, 2], stride=[1, 3])),
        ("encoder.0.bias", FakeTensor(base, [2], offset=4)),  # a view outside the anchor
        # a whole storage and a row-slice of it: an alias at element offset 8
        ("decoder.0.weight", FakeTensor(shared, [4, 6])),
        ("decoder.1.weight", FakeTensor(shared, [2, 6], offset=12)),
        ("decoder.2.weight", FakeTensor(shared, [2, 2], offset=8)),
        ("encoder.steps", FakeTensor(FakeStorage("LongStorage", [5, -6]), [2], param=False)),
        ("encoder.flag", FakeTensor(FakeStorage("BoolStorage", [True, False]), [2], param=False)),
        ("encoder.scalar", FakeTensor(FakeStorage("FloatStorage", [2.5]), [], stride=[])),
    ])
    obj = {"hparams": {"image_size": 32, "num_tokens": 4, "codebook_dim": 2,
                       "normalization": None}, "weights": weights}
    obj.update(extra)
    return obj


class SyntheticCheckpoints(ConvertCase):
    def save(self, obj, name="ckpt.pt", legacy=False):
        path = os.path.join(self.tmp.name, name)
        (save_legacy if legacy else save_zip)(path, obj)
        return path

    def check_dvae(self, b):
        self.assertEqual(b.kind, "dvae")
        self.assertEqual(b.tensor("vae.codebook.weight").dtype, "f32")  # from float64
        self.assertEqual(floats(b.read("vae.codebook.weight")),
                         [struct.unpack("<f", struct.pack("<f", 0.1 * i))[0] for i in range(8)])
        self.assertEqual(floats(b.read("vae.encoder.0.weight")), [0, 3, 1, 4, 2, 5])
        self.assertEqual(floats(b.read("vae.encoder.0.bias")), [4, 5])
        self.assertEqual(b.tensor("vae.encoder.0.weight").codec != B.CODEC_ALIAS, True)
        self.assertEqual(b.tensor("vae.encoder.0.bias").codec != B.CODEC_ALIAS, True)
        for name, offset in (("vae.decoder.1.weight", 12), ("vae.decoder.2.weight", 8)):
            e = b.tensor(name)
            self.assertEqual(e.codec, B.CODEC_ALIAS)
            self.assertEqual(b.tensors[e.target].name, "vae.decoder.0.weight")
            self.assertEqual(e.element_offset, offset)
            self.assertEqual(floats(b.read(name)), list(range(offset, offset + e.numel)))
        e = b.tensor("vae.encoder.steps")
        self.assertEqual((e.dtype, floats(b.read(e.name), "i64")), ("i64", [5, -6]))
        e = b.tensor("vae.encoder.flag")
        self.assertEqual((e.dtype, list(b.read(e.name))), ("u8", [1, 0]))
        self.assertEqual(b.tensor("vae.encoder.scalar").shape, ())
        self.assertEqual(floats(b.read("vae.encoder.scalar")), [2.5])
        self.assertNotIn("vae.normalization.mean", b.meta)
        self.assertEqual(b.meta["vae.num_layers"], 3)  # default filled in
        self.assertEqual(b.meta["vae.image_size"], 32)

    def test_zip_corner_cases(self):
        self.check_dvae(self.convert([self.save(dvae_checkpoint())]))

    def test_legacy_format(self):
        self.check_dvae(self.convert([self.save(dvae_checkpoint(), legacy=True)]))

    def test_training_entries_skipped(self):
        obj = dvae_checkpoint(epoch=3, opt_state={"state": {}}, scheduler_state=None)
        self.check_dvae(self.convert([self.save(obj)]))

    def test_unknown_entry(self):
        path = self.save(dvae_checkpoint(mystery=1))
        self.assertConvertError([path, "'mystery'"], [path])

    def test_unknown_hparam(self):
        obj = dvae_checkpoint()
        obj["hparams"]["num_tokenz"] = 3
        self.assertConvertError(["num_tokenz"], [self.save(obj)])  # neither DiscreteVAE nor CLIP

    def test_unknown_weight(self):
        obj = dvae_checkpoint()
        obj["weights"]["extra.weight"] = zeros(1)
        self.assertConvertError(["'extra.weight'"], [self.save(obj)])

    def test_unrecognised(self):
        self.assertConvertError(["unrecognised"], [self.save({"foo": 1})])

    def test_bad_bpe(self):
        path = os.path.join(self.tmp.name, "merges.txt")
        with open(path, "w") as f:
            f.write("hello world\n")
        self.assertConvertError(["merges.txt", "#version"], [], bpe=path)
        with open(path, "w") as f:
            f.write("#version: 0.2\na b\nc d e\n")
        self.assertConvertError(["merges.txt:3"], [], bpe=path)
        with open(path, "w") as f:
            f.write("#version: 0.2\na b\n")
        b = self.convert([], bpe=path)
        self.assertEqual(b.read("tokenizer.bpe_merges"), b"#version: 0.2\na b\n")

    def dalle_obj(self, vae_class, weights, vae_params=None):
        hp = {"dim": 8, "depth": 1, "num_text_tokens": 10, "text_seq_len": 4,
              "attn_types": "full", "shared_ff_ids": (0,)}
        w = collections.OrderedDict([("to_logits.1.weight", zeros(2, 8))])
        w.update(weights)
        return {"hparams": hp, "vae_params": vae_params, "epoch": 0, "version": "1.6.6",
                "vae_class_name": vae_class, "weights": w, "opt_state": {}, "scheduler_state": None}

    def test_dalle_with_vqgan(self):
        weights = {"vae.model.encoder.conv_in.weight": zeros(4, 3, 3, 3),
                   "vae.model.quantize.embed.weight": zeros(16, 4),
                   "vae.model.loss.discriminator.weight": zeros(2)}
        path = self.save(self.dalle_obj("VQGanVAE", weights))
        self.assertConvertError(["--config"], [path])
        yaml = os.path.join(self.tmp.name, "gumbel.yaml")
        with open(yaml, "w") as f:
            f.write("model:\n  target: taming.models.vqgan.GumbelVQ\n  params:\n"
                    "    kl_weight: 1.0e-08\n    n_embed: 16\n    embed_dim: 4\n"
                    "    temperature_scheduler_config:\n      target: x.Y\n"
                    "      params: {start: 0.9, stop: 1e-6}\n"
                    "    ddconfig: {resolution: 256, attn_resolutions: [16], ch_mult: [1, 1, 2]}\n"
                    "    lossconfig:\n      target: taming.modules.losses.DummyLoss\n")
        b = self.convert([path], config=yaml)
        self.assertEqual(b.meta["vae.kind"], "vqgan")
        self.assertIs(b.meta["vae.is_gumbel"], True)
        self.assertEqual(b.meta["vae.image_size"], 256)
        self.assertEqual(b.meta["vae.num_layers"], 4)
        self.assertEqual(b.meta["vae.num_tokens"], 16)
        self.assertEqual(b.meta["vae.temperature_scheduler_config.params.stop"], 1e-6)
        self.assertEqual(b.meta["dalle.attn_types"], ["full"])
        self.assertEqual(b.meta["dalle.shared_ff_ids"], ["0"])
        self.assertNotIn("vae.model.loss.discriminator.weight", b)
        self.assertIn("vae.model.quantize.embed.weight", b)
        # a VQModel config for a Gumbel checkpoint: the quantizer key is missing
        with open(yaml) as f:
            text = f.read().replace("GumbelVQ", "VQModel")
        with open(yaml, "w") as f:
            f.write(text)
        self.assertConvertError(["quantize.embedding.weight"], [path], config=yaml)

    def test_dalle_with_openai_dvae(self):
        n_hid, vocab = 4, 16
        w = {"vae.enc.blocks.input.w": zeros(n_hid, 3, 7, 7),
             "vae.enc.blocks.output.conv.w": zeros(vocab, 8 * n_hid, 1, 1),
             "vae.dec.blocks.input.w": zeros(8, vocab, 1, 1),
             "vae.dec.blocks.output.conv.w": zeros(6, n_hid, 1, 1)}
        for side in ("enc", "dec"):
            for g in range(1, 5):
                w[f"vae.{side}.blocks.group_{g}.block_1.res_path.conv_1.w"] = zeros(1)
        b = self.convert([self.save(self.dalle_obj("OpenAIDiscreteVAE", w))])
        m = b.meta
        self.assertEqual(m["vae.kind"], "openai_dvae")
        self.assertEqual((m["vae.n_hid"], m["vae.vocab_size"], m["vae.n_init"],
                          m["vae.n_blk_per_group"], m["vae.output_channels"],
                          m["vae.image_size"], m["vae.num_tokens"]),
                         (n_hid, vocab, 8, 1, 3, 256, vocab))

    def test_dalle_required_kwarg(self):
        obj = self.dalle_obj("DiscreteVAE", {"vae.codebook.weight": zeros(4, 2)},
                             vae_params={"num_tokens": 4, "codebook_dim": 2})
        del obj["hparams"]["depth"]
        self.assertConvertError(["'depth'", "missing"], [self.save(obj)])
        obj["hparams"]["depth"] = True
        self.assertConvertError(["depth", "i64"], [self.save(obj)])

    def test_deepspeed_weights(self):
        obj = self.dalle_obj("DiscreteVAE", {}, vae_params={})
        obj["weights"] = "To get a working standard checkpoint, look into consolidating"
        self.assertConvertError(["DeepSpeed"], [self.save(obj)])


if __name__ == "__main__":
    unittest.main()
