"""Fuzzing the checkpoint converter (bindings/python/dalle/convert.py,
torchfile.py, yamlmini.py) and the Python bundle reader (bundle.py), parsers
of files from outside like those the C fuzz targets of tests/fuzz cover.

Small valid checkpoints are built here with test_convert's writers (torch.save's
zip layout and the legacy pre-1.6 stream, a DiscreteVAE, a DALLE, a CLIP, a
taming yaml), plus, when ../shared/golden (or $DALLE_GOLDEN) is there, the
golden OpenAI dVAE and TorchScript CLIP files. Each is mutated with a fixed
seed (bytes flipped, set, inserted, deleted, a block copied, the file cut; for
zips also the pickles inside, re-zipped so the archive itself stays valid; and
for the checkpoints made here the values before pickling: tensor shapes,
strides, offsets and storage sizes, hyper-parameters, entry names) and given
to the command line's main(). Every input must end in success (then the
bundle written must read back) or in the converter's own clear error: exit
status 1 and one "dalle.convert: error: ..." line. Any other exception, a
traceback, or a conversion running past its time limit fails the test, which
then names the seed, the iteration and a copy of the input.

The Python bundle reader (bundle.py, behind `dalle.convert --info`) is fuzzed
the same way on the bundles of the C fuzz corpora (tests/fuzz/corpus*), their
header, metadata and directory crc32s fixed after most mutations so that the
parsers behind them are reached: open, every tensor read, verify and --info's
listing may only raise BundleError.

DALLE_FUZZ_ITERATIONS (default 40 per seed file) and DALLE_FUZZ_SEED (default 1)
change the run: `DALLE_FUZZ_ITERATIONS=2000 python3 -m unittest test_fuzz_convert`
fuzzes for longer.
"""

import collections
import contextlib
import io
import os
import random
import signal
import shutil
import sys
import tempfile
import struct
import unittest
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import test_convert as T  # noqa: E402  (its writers and fake tensors)
from dalle import bundle as B  # noqa: E402
from dalle import convert as C  # noqa: E402

ITERATIONS = int(os.environ.get("DALLE_FUZZ_ITERATIONS", "40"))
SEED = int(os.environ.get("DALLE_FUZZ_SEED", "1"))
TIME_LIMIT = 20  # seconds for one conversion (the seeds take milliseconds)
GOLDEN_FILES = [("openai_dvae", "encoder.pkl", ["decoder.pkl"]), ("openai_clip", "clip_jit.pt", [])]
PREFIX = "dalle.convert: error: "
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, ord("("), ord("."), ord("q"), ord("K"), ord("J")]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


# ---------------------------------------------------------------- seeds

def dalle_checkpoint():
    hp = {"dim": 8, "depth": 1, "num_text_tokens": 10, "text_seq_len": 4,
          "attn_types": "full", "shared_ff_ids": (0,)}
    w = collections.OrderedDict([("to_logits.1.weight", T.zeros(2, 8)),
                                 ("vae.codebook.weight", T.zeros(4, 2))])
    return {"hparams": hp, "vae_params": {"num_tokens": 4, "codebook_dim": 2}, "epoch": 0,
            "version": "1.6.6", "vae_class_name": "DiscreteVAE", "weights": w,
            "opt_state": {}, "scheduler_state": None}


def clip_checkpoint():
    hp = {"dim_text": 8, "dim_image": 8, "dim_latent": 8, "num_text_tokens": 10,
          "text_enc_depth": 1, "text_seq_len": 4, "text_heads": 1, "visual_enc_depth": 1,
          "visual_heads": 1, "visual_image_size": 8, "visual_patch_size": 4}
    w = collections.OrderedDict([("text_emb.weight", T.tensor([0.5] * 80, [10, 8])),
                                 ("temperature", T.tensor([1.0], []))])
    return {"hparams": hp, "weights": w}


VQGAN_YAML = ("model:\n  target: taming.models.vqgan.GumbelVQ\n  params:\n"
              "    kl_weight: 1.0e-08\n    n_embed: 16\n    embed_dim: 4\n"
              "    ddconfig: {resolution: 256, attn_resolutions: [16], ch_mult: [1, 1, 2]}\n"
              "    lossconfig:\n      target: taming.modules.losses.DummyLoss\n")


class Seed:
    def __init__(self, name, path, inputs=(), config=None, golden=False, build=None,
                 legacy=False):
        self.name, self.path, self.inputs = name, path, list(inputs)
        self.config, self.golden = config, golden  # config: the checkpoint a yaml configures
        self.build, self.legacy = build, legacy  # build(): the checkpoint object, made anew


def build_seeds(folder):
    """The seed files: small ones made here, and the golden ones found."""
    seeds = []
    for name, build, legacy in (("dvae.pt", T.dvae_checkpoint, False),
                                ("dvae_legacy.pt", T.dvae_checkpoint, True),
                                ("dalle.pt", dalle_checkpoint, False),
                                ("clip_legacy.pt", clip_checkpoint, True)):
        path = os.path.join(folder, name)
        (T.save_legacy if legacy else T.save_zip)(path, build())
        seeds.append(Seed(name, path, build=build, legacy=legacy))
    path = os.path.join(folder, "vqgan.yaml")
    with open(path, "w") as f:
        f.write(VQGAN_YAML)
    seeds.append(Seed("vqgan.yaml", path, config=os.path.join(folder, "dalle.pt")))
    golden = os.environ.get("DALLE_GOLDEN") or os.path.join(HERE, "..", "..", "..", "shared",
                                                              "golden")
    for case, name, others in GOLDEN_FILES:
        path = os.path.join(golden, case, name)
        if os.path.isfile(path):
            seeds.append(Seed(f"golden {case}/{name}", path,
                              [os.path.join(golden, case, o) for o in others], golden=True))
    return seeds


# ---------------------------------------------------------------- mutations

def mutate_bytes(rng, data):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1) if data else 0
        if op == 0 and data:  # flip a bit
            pos = min(pos, len(data) - 1)
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # an interesting byte
            pos = min(pos, len(data) - 1)
            data[pos] = rng.choice(INTERESTING)
        elif op == 2:  # insert bytes
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 3 and data:  # delete bytes
            del data[pos:pos + rng.randrange(1, 17)]
        elif op == 4 and data:  # copy a block elsewhere
            src = rng.randrange(len(data))
            block = data[src:src + rng.randrange(1, 65)]
            data[pos:pos] = block
        elif op == 5:  # cut the file
            del data[pos:]
    return bytes(data)


def mutate_zip(rng, data):
    """Mutate one pickle (or the text) inside a zip and write the zip anew."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    picks = [k for k, (i, _) in enumerate(members)
             if i.filename.endswith((".pkl", "version", "byteorder")) or "/code/" in i.filename]
    if not picks:
        return mutate_bytes(rng, data)
    k = rng.choice(picks)
    info, body = members[k]
    members[k] = (info, mutate_bytes(rng, body))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i, body in members:
            z.writestr(i.filename, body)
    return out.getvalue()


ODD_INTS = [0, 1, -1, 2, 3, 7, 255, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, -2**63]
ODD_VALUES = ODD_INTS + [None, True, 1.5, float("nan"), float("inf"), "", "x" * 300, "full,sparse",
                         [], [1, 2], (0,), {"a": 1}]


def tensors_of(obj, out):
    """Every FakeTensor in a checkpoint object (dicts, lists, tuples)."""
    if isinstance(obj, T.FakeTensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            tensors_of(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            tensors_of(v, out)
    return out


def mutate_object(rng, obj):
    """Change a few values of a checkpoint object: a tensor's shape, stride,
    offset or storage size, a hyper-parameter, an entry's key or type."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        tensors = tensors_of(obj, [])
        dicts = [d for d in (obj, obj.get("hparams"), obj.get("vae_params"), obj.get("weights"))
                 if isinstance(d, dict) and d]
        op = rng.randrange(6)
        if op <= 2 and tensors:
            t = rng.choice(tensors)
            if op == 0 and t.shape:
                shape = list(t.shape)
                shape[rng.randrange(len(shape))] = rng.choice(ODD_INTS)
                t.shape = tuple(shape)
            elif op == 1 and t.stride:
                stride = list(t.stride)
                stride[rng.randrange(len(stride))] = rng.choice(ODD_INTS)
                t.stride = tuple(stride)
            else:
                t.offset = rng.choice(ODD_INTS)
        elif op == 3 and tensors:  # a storage shorter (or longer) than its tensors need
            st = rng.choice(tensors).storage
            st.data = st.data[:rng.randrange(len(st.data) + 1)] if rng.random() < 0.7 else \
                st.data * 3
            st.numel = len(st.data) // T.ITEMSIZE[st.typename]
        elif op == 4 and dicts:
            d = rng.choice(dicts)
            d[rng.choice(list(d))] = rng.choice(ODD_VALUES)
        elif dicts:  # an entry renamed, or of another type
            d = rng.choice(dicts)
            key = rng.choice(list(d))
            value = d.pop(key)
            key = str(key)
            d[rng.choice([key + ".x", "", key.upper(), 3])] = value
    return obj


def mutate(rng, data):
    if data[:2] == b"PK" and rng.random() < 0.7:
        return mutate_zip(rng, data)
    return mutate_bytes(rng, data)


# ---------------------------------------------------------------- the run

class ConverterFuzz(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dalle-fuzz-convert-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.old_alarm = signal.signal(signal.SIGALRM, _alarm)
        self.addCleanup(signal.signal, signal.SIGALRM, self.old_alarm)

    def run_main(self, argv):
        """main(argv) -> (status, stderr); a Hang when it runs too long."""
        err = io.StringIO()
        signal.alarm(TIME_LIMIT)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = C.main(argv)
        finally:
            signal.alarm(0)
        return status, err.getvalue()

    def keep(self, data, label):
        """A copy of a failing input beside the build (or in the temp dir)."""
        where = os.environ.get("DALLE_BUILD_DIR") or tempfile.gettempdir()
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
        path = os.path.join(where, "fuzz-convert-" + name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def check_one(self, data, label, inputs=(), args=()):
        """Convert data (with the other inputs and arguments): "ok", "error",
        or a failure (a string starting with "FAIL")."""
        path = os.path.join(self.tmp, "input.pt")
        out = os.path.join(self.tmp, "out.dalle")
        with open(path, "wb") as f:
            f.write(data)
        if os.path.exists(out):
            os.remove(out)
        try:
            status, err = self.run_main([path, *inputs, *args, "-o", out])
        except Hang:
            return f"FAIL {label}: the converter ran past {TIME_LIMIT} s"
        except SystemExit as e:  # argparse's; never for a file's contents
            return f"FAIL {label}: SystemExit({e.code})"
        except Exception as e:  # noqa: BLE001 - exactly what this test looks for
            return f"FAIL {label}: {type(e).__name__} escaped the converter: {e}"
        if status == 0:
            try:
                B.Bundle.open(out).verify()  # what it wrote must read back
            except B.BundleError as e:
                return f"FAIL {label}: converted, but the bundle is bad: {e}"
            return "ok"
        lines = err.splitlines()
        if status != 1 or len(lines) != 1 or not lines[0].startswith(PREFIX) or \
                len(lines[0]) == len(PREFIX):
            return f"FAIL {label}: exit status {status} with not one clear error line: {err!r}"
        return "error"

    def check_input(self, data, label, seed):
        """A checkpoint with its companions; a yaml as the DALLE seed's --config."""
        if seed.config:
            path = os.path.join(self.tmp, "config.yaml")
            with open(path, "wb") as f:
                f.write(data)
            with open(seed.config, "rb") as f:
                return self.check_one(f.read(), label, args=["--config", path])
        return self.check_one(data, label, inputs=seed.inputs)

    def test_mutated_checkpoints(self):
        seeds = build_seeds(self.tmp)
        totals = collections.Counter()
        failures = []
        for k, seed in enumerate(seeds):
            with open(seed.path, "rb") as f:
                original = f.read()
            rng = random.Random(SEED * 1000003 + k)
            n = max(ITERATIONS // 4, 1) if seed.golden else ITERATIONS
            if not seed.config:
                r = self.check_input(original, f"{seed.name} unmutated", seed)
                if r != "ok":
                    failures.append(f"FAIL {seed.name}: the seed itself does not convert: {r}")
            for i in range(n):
                if seed.build and rng.random() < 0.4:  # the values, in a well-formed file
                    path = os.path.join(self.tmp, "object.pt")
                    (T.save_legacy if seed.legacy else T.save_zip)(
                        path, mutate_object(rng, seed.build()))
                    with open(path, "rb") as f:
                        data = f.read()
                else:
                    data = mutate(rng, original)
                label = f"{seed.name} iteration {i} (DALLE_FUZZ_SEED={SEED})"
                r = self.check_input(data, label, seed)
                totals[r if not r.startswith("FAIL") else "fail"] += 1
                if r.startswith("FAIL"):
                    failures.append(f"{r} (input kept as {self.keep(data, label)})")
        print(f"\nconverter fuzz: {sum(totals.values())} mutated inputs of {len(seeds)} seeds, "
              f"{totals['ok']} converted, {totals['error']} clear errors, "
              f"{totals['fail']} failures", file=sys.stderr)
        self.assertEqual(failures, [], "\n".join(failures[:20]))


# ---------------------------------------------------------------- bundles

FUZZ_DIR = os.path.join(HERE, "..", "fuzz")


def fix_crcs(data):
    """The header, metadata and directory crc32s of a mutated bundle made
    right again, so that the Python reader's parsers behind them see it."""
    if len(data) < B.HEADER_SIZE:
        return data
    f = list(B._HEADER.unpack_from(data, 0))
    f[8] = zlib.crc32(data[f[5]:f[5] + f[6]])    # metadata (offset, size)
    f[12] = zlib.crc32(data[f[9]:f[9] + f[10]])  # directory (offset, size)
    head = B._HEADER.pack(*f)
    head = head[:124] + struct.pack("<I", zlib.crc32(head[:124]))
    return head + data[B.HEADER_SIZE:]


class BundleFuzz(unittest.TestCase):
    """The Python bundle reader (bindings/python/dalle/bundle.py, what
    `dalle.convert --info` and the tests use) on mutated bundles of the C
    fuzz corpora: open, read every tensor, verify and --info end in a
    BundleError at worst."""

    def test_mutated_bundles(self):
        seeds = sorted(os.path.join(d, n) for d in (os.path.join(FUZZ_DIR, "corpus"),
                                                    os.path.join(FUZZ_DIR, "corpus_model"))
                       if os.path.isdir(d) for n in os.listdir(d) if n.endswith(".dalle"))
        if not seeds:
            self.skipTest(f"no seed bundles under {FUZZ_DIR}")
        failures, totals = [], collections.Counter()
        old = signal.signal(signal.SIGALRM, _alarm)
        self.addCleanup(signal.signal, signal.SIGALRM, old)
        tmp = tempfile.mkdtemp(prefix="dalle-fuzz-bundle-")
        self.addCleanup(shutil.rmtree, tmp, True)
        tmp_path = os.path.join(tmp, "mutated.dalle")
        for k, path in enumerate(seeds):
            with open(path, "rb") as f:
                original = f.read()
            rng = random.Random(SEED * 7919 + k)
            for i in range(ITERATIONS):
                data = mutate_bytes(rng, original)
                if rng.random() < 0.8:
                    data = fix_crcs(data)
                label = f"{os.path.basename(path)} iteration {i} (DALLE_FUZZ_SEED={SEED})"
                signal.alarm(TIME_LIMIT)
                try:
                    b = B.Bundle(data, "mutated.dalle")
                    for e in b.tensors:
                        b.read(e.name)
                    b.verify()
                    with open(tmp_path, "wb") as f:
                        f.write(data)
                    C.info(tmp_path, out=io.StringIO())  # what --info prints
                    totals["ok"] += 1
                except B.BundleError:
                    totals["error"] += 1
                except Hang:
                    failures.append(f"FAIL {label}: the reader ran past {TIME_LIMIT} s")
                except Exception as e:  # noqa: BLE001 - what this test looks for
                    failures.append(f"FAIL {label}: {type(e).__name__} escaped the reader: {e}")
                finally:
                    signal.alarm(0)
                if failures and failures[-1].startswith(f"FAIL {label}"):
                    where = os.environ.get("DALLE_BUILD_DIR") or tempfile.gettempdir()
                    kept = os.path.join(where, f"fuzz-bundle-{k}-{i}-seed{SEED}.dalle")
                    with open(kept, "wb") as f:
                        f.write(data)
                    failures[-1] += f" (input kept as {kept})"
        print(f"\nbundle fuzz: {sum(totals.values())} mutated bundles of {len(seeds)} seeds, "
              f"{totals['ok']} read, {totals['error']} clear errors, {len(failures)} failures",
              file=sys.stderr)
        self.assertEqual(failures, [], "\n".join(failures[:20]))


if __name__ == "__main__":
    unittest.main()
