"""The Python binding (bindings/python/dalle): loading libdalle, errors,
handles, the array conversions, and Dalle.logits / Dalle.sample against the
golden case dalle_full.

Run by meson with DALLE_LIBRARY, DALLE_BUILD_DIR, DALLE_GOLDEN and
PYTHONPATH set (tests/meson.build); by hand:

    DALLE_BUILD_DIR=build PYTHONPATH=bindings/python \
        python3 -m unittest -v test_binding      # in tests/python

Standard library only. numpy is used when it is importable (both the list
path and the numpy path are then tested); the list path always is.
"""

import math
import os
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
if os.path.join(REPO, "bindings", "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import npy  # noqa: E402

import dalle  # noqa: E402
from dalle import _arrays  # noqa: E402

FLT_MAX = 3.4028234663852886e+38
GOLDEN = os.environ.get("DALLE_GOLDEN") or os.path.normpath(
    os.path.join(REPO, "..", "shared", "golden"))
BUILD = os.environ.get("DALLE_BUILD_DIR") or os.path.join(REPO, "build")

try:
    import numpy  # noqa: F401
    HAVE_NUMPY = True
except ImportError:
    HAVE_NUMPY = False


def bundle(name):
    p = os.path.join(BUILD, "tests", name + ".dalle")
    if not os.path.isfile(p):
        raise unittest.SkipTest(f"{p} not built (needs the golden cases)")
    return p


def golden(case, name):
    p = os.path.join(GOLDEN, case, name)
    if not os.path.isfile(p):
        raise unittest.SkipTest(f"{p} absent")
    return npy.load(p)


def rows(arr):
    """An NpyArray as nested lists of Python numbers."""
    return _arrays.nest(arr.values(), arr.shape)


def flat(x):
    """numpy array or nested lists → flat list of Python numbers."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    out = []

    def walk(v):
        if isinstance(v, list):
            for e in v:
                walk(e)
        else:
            out.append(v)
    walk(x)
    return out


def shape(x):
    return _arrays.shape_of(x)


def compare_logits(test, got, expected, tol):
    """Masked entries exactly -FLT_MAX at the same places; the rest within
    relative L2 `tol`."""
    got = flat(got)
    test.assertEqual(len(got), len(expected))
    num = den = 0.0
    for g, e in zip(got, expected):
        if e == -FLT_MAX:
            if g != -FLT_MAX:
                test.fail(f"masked entry is {g}, expected exactly -FLT_MAX")
        else:
            test.assertNotEqual(g, -FLT_MAX)
            num += (g - e) ** 2
            den += e * e
    rel = math.sqrt(num / den)
    test.assertLess(rel, tol, f"relative L2 {rel:.3g} above {tol}")
    return rel


def run_py(code, env_update=None, drop=()):
    env = dict(os.environ)
    for k in drop:
        env.pop(k, None)
    env.update(env_update or {})
    env["PYTHONPATH"] = os.path.join(REPO, "bindings", "python")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


class ListMode(unittest.TestCase):
    """Runs with numpy switched off: outputs are nested lists."""

    def setUp(self):
        _arrays.use_numpy(False)

    def tearDown(self):
        _arrays.use_numpy(True)


# ---------------------------------------------------------------------------
# Loading the library
# ---------------------------------------------------------------------------

class Loading(unittest.TestCase):
    def test_import_loads_no_library(self):
        r = run_py("import dalle, dalle.convert, dalle.bundle, sys\n"
                   "maps = open('/proc/self/maps').read()\n"
                   "assert 'libdalle' not in maps, 'libdalle loaded on import'\n"
                   "print(dalle.__version__)",
                   env_update={"DALLE_LIBRARY": "/nonexistent/libdalle.so.1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), dalle.__version__)

    def test_convert_module_runs_without_library(self):
        r = run_py("import runpy, sys; sys.argv = ['dalle.convert', '--help']\n"
                   "runpy.run_module('dalle.convert', run_name='__main__')",
                   env_update={"DALLE_LIBRARY": "/nonexistent/libdalle.so.1"})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_bad_dalle_library(self):
        r = run_py("import dalle\n"
                   "try:\n"
                   "    dalle.Dalle('x.dalle')\n"
                   "except dalle.DalleError as e:\n"
                   "    print(e.code_name, '|', e)\n",
                   env_update={"DALLE_LIBRARY": "/nonexistent/libdalle.so.1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("DALLE_ERR_IO", r.stdout)
        self.assertIn("/nonexistent/libdalle.so.1", r.stdout)

    def test_build_dir(self):
        lib = os.path.join(BUILD, "lib", "libdalle.so.1")
        if not os.path.exists(lib):
            self.skipTest(f"{lib} absent")
        r = run_py("import dalle; print(dalle.library_path()); print(dalle.library_version())",
                   env_update={"DALLE_BUILD_DIR": BUILD}, drop=("DALLE_LIBRARY",))
        self.assertEqual(r.returncode, 0, r.stderr)
        path, version = r.stdout.split()
        self.assertEqual(os.path.realpath(path), os.path.realpath(lib))
        self.assertEqual(version.split(".")[0], "1")

    def test_abi_major_checked(self):
        cc = next((c for c in ("cc", "gcc", "clang")
                   if any(os.access(os.path.join(d, c), os.X_OK)
                          for d in os.environ.get("PATH", "").split(os.pathsep))), None)
        if cc is None:
            self.skipTest("no C compiler")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "fake.c")
            with open(src, "w") as f:
                f.write("int dalle_version_number(void) { return 20000; }\n")
            so = os.path.join(d, "libdalle.so.1")
            subprocess.run([cc, "-shared", "-fPIC", "-o", so, src], check=True)
            r = run_py("import dalle\n"
                       "try:\n"
                       "    dalle.library_path()\n"
                       "except dalle.DalleError as e:\n"
                       "    print(e.code_name, '|', e)\n",
                       env_update={"DALLE_LIBRARY": so})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("DALLE_ERR_VERSION", r.stdout)
        self.assertIn("ABI 2", r.stdout)

    def test_version(self):
        self.assertEqual(dalle.library_version().split(".")[0], "1")
        self.assertEqual(dalle.__version__.split(".")[0], "1")


# ---------------------------------------------------------------------------
# Errors and handles
# ---------------------------------------------------------------------------

class Errors(unittest.TestCase):
    def test_missing_file(self):
        path = os.path.join(tempfile.gettempdir(), "no-such-dir-dalle", "missing.dalle")
        for cls in (dalle.Dalle, dalle.Vae, dalle.Clip, dalle.Bundle):
            with self.subTest(cls=cls.__name__):
                with self.assertRaises(dalle.DalleError) as cm:
                    cls(path)
                e = cm.exception
                self.assertEqual(e.status, dalle.Status.IO)
                self.assertEqual(e.code_name, "DALLE_ERR_IO")
                self.assertIn(path, str(e))
                self.assertIn(path, e.message)

    def test_not_a_bundle(self):
        with tempfile.NamedTemporaryFile(suffix=".dalle") as f:
            f.write(b"this is not a bundle at all" * 10)
            f.flush()
            with self.assertRaises(dalle.DalleError) as cm:
                dalle.Dalle(f.name)
            self.assertEqual(cm.exception.status, dalle.Status.FORMAT)
            self.assertIn(f.name, str(cm.exception))

    def test_wrong_kind(self):
        clip = bundle("clip_dalle_pytorch")
        with self.assertRaises(dalle.DalleError) as cm:
            dalle.Dalle(clip)
        self.assertEqual(cm.exception.status, dalle.Status.MISMATCH)
        self.assertIn("clip", str(cm.exception))
        with self.assertRaises(dalle.DalleError) as cm:
            dalle.Vae(clip)
        self.assertEqual(cm.exception.status, dalle.Status.MISMATCH)
        # a VAE bundle is a Vae, not a Dalle
        vae = bundle("vae_resblocks")
        with self.assertRaises(dalle.DalleError) as cm:
            dalle.Dalle(vae)
        self.assertEqual(cm.exception.status, dalle.Status.MISMATCH)
        self.assertIn("dalle.Vae", str(cm.exception))
        with dalle.Vae(vae) as v:
            self.assertEqual(v.kind, "dvae")
        # a DALL-E bundle is not a CLIP
        with self.assertRaises(dalle.DalleError) as cm:
            dalle.Clip(bundle("dalle_full"))
        self.assertEqual(cm.exception.status, dalle.Status.MISMATCH)

    def test_error_object(self):
        e = dalle.DalleError(-13, "x: not yet")
        self.assertEqual(e.status, dalle.Status.NOT_IMPLEMENTED)
        self.assertEqual(e.code_name, "DALLE_ERR_NOT_IMPLEMENTED")
        self.assertEqual(str(e), "x: not yet")
        self.assertIn("NOT_IMPLEMENTED", repr(e))
        e = dalle.DalleError(-99, "")
        self.assertEqual(e.status, -99)
        self.assertTrue(isinstance(e, Exception))

    def test_bad_params(self):
        p = bundle("dalle_full")
        with self.assertRaises(dalle.DalleError) as cm:
            dalle.Dalle(p, n_threads=-1)
        self.assertEqual(cm.exception.status, dalle.Status.INVALID_ARGUMENT)
        self.assertIn("n_threads", str(cm.exception))
        with self.assertRaises(ValueError):
            dalle.Dalle(p, backend="tpu")
        with self.assertRaises(TypeError):
            dalle.Dalle(p, max_batch="8")
        with self.assertRaises(TypeError):
            dalle.Dalle(12345)

    def test_missing_symbol(self):
        from dalle import _lib
        with self.assertRaises(dalle.DalleError) as cm:
            _lib.require("dalle_no_such_function", "Thing.method")
        e = cm.exception
        self.assertEqual(e.status, dalle.Status.UNSUPPORTED)
        self.assertIn("Thing.method: not available in this libdalle", str(e))
        self.assertIn("dalle_no_such_function", str(e))

    def test_path_like(self):
        import pathlib
        with dalle.Dalle(pathlib.Path(bundle("dalle_full"))) as m:
            self.assertEqual(m.kind, "dalle")


class Handles(unittest.TestCase):
    def test_close_twice_and_use_after_close(self):
        m = dalle.Dalle(bundle("dalle_full"))
        self.assertFalse(m.closed)
        m.close()
        m.close()
        self.assertTrue(m.closed)
        for call in (lambda: m.text_seq_len, lambda: m.image_size,
                     lambda: m.logits([[1] * 16]), lambda: m.sample([[1] * 16]),
                     lambda: m.decode([[0] * 64]), lambda: m.meta):
            with self.assertRaises(dalle.DalleError) as cm:
                call()
            self.assertIn("closed", str(cm.exception))
        with self.assertRaises(dalle.DalleError):
            with m:
                pass

    def test_context_manager(self):
        with dalle.Dalle(bundle("dalle_full")) as m:
            self.assertEqual(m.text_seq_len, 16)
        self.assertTrue(m.closed)
        with self.assertRaises(dalle.DalleError):
            m.logits([[1] * 16])

    def test_del_releases(self):
        import gc
        import weakref
        m = dalle.Dalle(bundle("dalle_full"))
        ref = weakref.ref(m)
        del m
        gc.collect()
        self.assertIsNone(ref())

    def test_handle_is_private(self):
        with dalle.Dalle(bundle("dalle_full")) as m:
            public = [a for a in dir(m) if not a.startswith("_")]
            self.assertNotIn("ctx", public)
            self.assertNotIn("handle", public)

    def test_threads_share_one_object(self):
        with dalle.Dalle(bundle("dalle_full"), n_threads=1) as m:
            text = [[5] * 16]
            want = flat(m.sample(text, seed=11))
            results, errors = [], []

            def work():
                try:
                    results.append(flat(m.sample(text, seed=11)))
                except Exception as e:  # pragma: no cover
                    errors.append(e)
            ts = [threading.Thread(target=work) for _ in range(3)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(results, [want] * 3)


# ---------------------------------------------------------------------------
# Array conversions (pure Python)
# ---------------------------------------------------------------------------

class Arrays(ListMode):
    def test_ids(self):
        b = _arrays.ids_2d([[1, 2, 3], [4, 5, 6]], "x")
        self.assertEqual(b.shape, (2, 3))
        self.assertEqual([b.ptr[i] for i in range(6)], [1, 2, 3, 4, 5, 6])
        b = _arrays.ids_2d((7, 8), "x")
        self.assertEqual(b.shape, (1, 2))
        b = _arrays.ids_2d([[], []], "x")
        self.assertEqual(b.shape, (2, 0))

    def test_bad_ids(self):
        with self.assertRaises(ValueError):
            _arrays.ids_2d([[1, 2], [3]], "x")          # ragged
        with self.assertRaises(ValueError):
            _arrays.ids_2d([[1, [2]], [3, 4]], "x")     # mixed depth
        with self.assertRaises(TypeError):
            _arrays.ids_2d([[1.5, 2]], "x")             # floats are not ids
        with self.assertRaises(TypeError):
            _arrays.ids_2d([[True, 2]], "x")
        with self.assertRaises(ValueError):
            _arrays.ids_2d([[1 << 40]], "x")            # would wrap in int32
        with self.assertRaises(TypeError):
            _arrays.ids_2d("abc", "x")
        with self.assertRaises(ValueError):
            _arrays.ids_2d([[[1]]], "x")                # 3-D
        with self.assertRaises(ValueError):
            _arrays.ids_2d([[1, 2]], "x", width=3)

    def test_out_lists(self):
        o = _arrays.Out("f", (2, 3))
        for i in range(6):
            o.ptr[i] = i / 2
        self.assertEqual(o.value(), [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]])
        o = _arrays.Out("i", (1, 2))
        o.ptr[1] = -7
        self.assertEqual(o.value(), [[0, -7]])

    def test_images(self):
        img = [[[0.5] * 4] * 4] * 3
        b = _arrays.images_4d(img, "x", 4)
        self.assertEqual(b.shape, (1, 3, 4, 4))
        with self.assertRaises(ValueError):
            _arrays.images_4d(img, "x", 8)
        with self.assertRaises(ValueError):
            _arrays.images_4d([[[0.5] * 4] * 4] * 4, "x", 4)   # 4 channels

    @unittest.skipUnless(HAVE_NUMPY, "numpy not installed")
    def test_numpy_inputs_in_list_mode(self):
        import numpy as np
        b = _arrays.ids_2d(np.arange(6, dtype=np.int64).reshape(2, 3), "x")
        self.assertEqual(b.shape, (2, 3))
        self.assertEqual([b.ptr[i] for i in range(6)], list(range(6)))


@unittest.skipUnless(HAVE_NUMPY, "numpy not installed")
class NumpyArrays(unittest.TestCase):
    def test_ids(self):
        import numpy as np
        for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32):
            b = _arrays.ids_2d(np.array([[1, 2], [3, 4]], dtype=dt), "x")
            self.assertEqual(b.shape, (2, 2))
            self.assertEqual([b.ptr[i] for i in range(4)], [1, 2, 3, 4])
        # non-contiguous input
        a = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
        b = _arrays.ids_2d(a, "x")
        self.assertEqual([b.ptr[i] for i in range(6)], [0, 2, 4, 6, 8, 10])
        with self.assertRaises(TypeError):
            _arrays.ids_2d(np.zeros((1, 2), np.float32), "x")
        with self.assertRaises(ValueError):
            _arrays.ids_2d(np.array([[1 << 40]], np.int64), "x")

    def test_out(self):
        import numpy as np
        o = _arrays.Out("f", (2, 3))
        o.ptr[4] = 2.5
        v = o.value()
        self.assertIsInstance(v, np.ndarray)
        self.assertEqual(v.dtype, np.float32)
        self.assertEqual(v[1, 1], 2.5)

    def test_images(self):
        import numpy as np
        b = _arrays.images_4d(np.ones((2, 3, 4, 4), np.float64), "x", 4)
        self.assertEqual(b.shape, (2, 3, 4, 4))
        with self.assertRaises(TypeError):
            _arrays.images_4d(np.ones((1, 3, 4, 4), np.uint8), "x", 4)


# ---------------------------------------------------------------------------
# Dalle: logits and sampling (golden case dalle_full)
# ---------------------------------------------------------------------------

class DalleCase:
    """Mixin: a dalle_full model and its golden inputs."""

    @classmethod
    def setUpClass(cls):
        cls.path = bundle("dalle_full")
        cls.text = rows(golden("dalle_full", "text.npy"))
        cls.image = rows(golden("dalle_full", "image_tokens.npy"))
        cls.model = dalle.Dalle(cls.path, n_threads=2)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()


class DalleShapes(DalleCase, unittest.TestCase):
    def test_shapes(self):
        m = self.model
        self.assertEqual(m.kind, "dalle")
        self.assertEqual(m.text_seq_len, 16)
        self.assertEqual(m.image_seq_len, 64)
        self.assertEqual(m.image_size, 32)
        self.assertEqual(m.total_tokens, 544)
        self.assertEqual(m.total_tokens, m.num_text_tokens + m.text_seq_len + m.num_image_tokens)
        meta = m.meta
        self.assertEqual(meta["general.kind"], "dalle")
        self.assertEqual(meta["dalle.text_seq_len"], 16)
        self.assertIn("dalle_full.dalle", repr(m))


class DalleLogits(DalleCase, ListMode):
    def test_logits_golden(self):
        expected = golden("dalle_full", "logits.npy")
        tol = 1e-4
        got = self.model.logits(self.text, self.image)
        self.assertIsInstance(got, list)
        self.assertEqual(shape(got), tuple(expected.shape))
        compare_logits(self, got, expected.values(), tol)

    def test_logits_incremental_golden(self):
        expected = golden("dalle_full", "logits.npy")
        got = self.model.logits(self.text, self.image, incremental=True)
        self.assertEqual(shape(got), tuple(expected.shape))
        compare_logits(self, got, expected.values(), 1e-4)

    def test_partial_image(self):
        full = self.model.logits(self.text, self.image)
        part = self.model.logits(self.text, [r[:5] for r in self.image])
        self.assertEqual(shape(part), (2, 16 + 1 + 5, 544))
        want = flat([[row for row in b[:22]] for b in full])
        compare_logits(self, part, want, 1e-5)
        none = self.model.logits(self.text)
        self.assertEqual(shape(none), (2, 17, 544))
        self.assertEqual(shape(self.model.logits(self.text, [[], []])), (2, 17, 544))

    def test_single_row(self):
        one = self.model.logits(self.text[1], self.image[1])
        self.assertEqual(shape(one), (1, 80, 544))
        both = self.model.logits(self.text, self.image)
        compare_logits(self, one, flat(both[1]), 1e-5)

    def test_cond_scale(self):
        t, i = self.text, [r[:3] for r in self.image]
        plain = flat(self.model.logits(t, i))
        guided = self.model.logits(t, i, cond_scale=3.0)
        self.assertNotEqual(flat(guided), plain)
        inc = self.model.logits(t, i, cond_scale=3.0, incremental=True)
        compare_logits(self, inc, flat(guided), 1e-4)

    def test_errors(self):
        m = self.model
        bad = [row[:] for row in self.text]
        bad[1][3] = 10 ** 6
        with self.assertRaises(dalle.DalleError) as cm:
            m.logits(bad, self.image)
        e = cm.exception
        self.assertEqual(e.status, dalle.Status.INVALID_ARGUMENT)
        self.assertIn("text[1][3]", str(e))
        self.assertIn("out of range", str(e))
        bad = [row[:] for row in self.image]
        bad[0][7] = -1
        with self.assertRaises(dalle.DalleError) as cm:
            m.logits(self.text, bad, incremental=True)
        self.assertIn("image[0][7]", str(cm.exception))
        with self.assertRaises(dalle.DalleError) as cm:
            m.logits(self.text, self.image, cond_scale=float("nan"))
        self.assertIn("cond_scale", str(cm.exception))
        # shapes: checked in Python (C cannot see them)
        with self.assertRaises(ValueError):
            m.logits([r[:15] for r in self.text], self.image)
        with self.assertRaises(ValueError):
            m.logits(self.text, self.image[:1])
        with self.assertRaises(ValueError):
            m.logits(self.text, [r + [0] for r in self.image])
        with self.assertRaises(TypeError):
            m.logits(self.text, self.image, cond_scale="3")
        with self.assertRaises(TypeError):
            m.logits(42)


@unittest.skipUnless(HAVE_NUMPY, "numpy not installed")
class DalleLogitsNumpy(DalleCase, unittest.TestCase):
    def test_logits_golden_numpy(self):
        import numpy as np
        expected = np.frombuffer(golden("dalle_full", "logits.npy").data, "<f4").reshape(2, 80, 544)
        text = np.array(self.text, dtype=np.int64)
        image = np.array(self.image, dtype=np.int64)
        for incremental in (False, True):
            got = self.model.logits(text, image, incremental=incremental)
            self.assertIsInstance(got, np.ndarray)
            self.assertEqual(got.dtype, np.float32)
            self.assertEqual(got.shape, expected.shape)
            masked = expected == -np.float32(FLT_MAX)
            self.assertTrue(np.array_equal(got == -np.float32(FLT_MAX), masked))
            d = (got - expected)[~masked].astype(np.float64)
            rel = np.sqrt((d ** 2).sum() / (expected[~masked].astype(np.float64) ** 2).sum())
            self.assertLess(rel, 1e-4)

    def test_sample_numpy(self):
        import numpy as np
        ids = self.model.sample(np.array(self.text), seed=5)
        self.assertIsInstance(ids, np.ndarray)
        self.assertEqual(ids.dtype, np.int32)
        self.assertEqual(ids.shape, (2, 64))
        _arrays.use_numpy(False)
        try:
            lst = self.model.sample(self.text, seed=5)
        finally:
            _arrays.use_numpy(True)
        self.assertEqual(ids.tolist(), lst)


class DalleSample(DalleCase, ListMode):
    def test_shape_range_determinism(self):
        m = self.model
        a = m.sample(self.text, seed=1234)
        self.assertIsInstance(a, list)
        self.assertEqual(shape(a), (2, 64))
        self.assertTrue(all(0 <= v < m.num_image_tokens for v in flat(a)))
        self.assertEqual(m.sample(self.text, seed=1234), a)
        self.assertNotEqual(m.sample(self.text, seed=1235), a)

    def test_thread_count_does_not_change_tokens(self):
        a = self.model.sample(self.text, seed=77, temperature=0.9)
        with dalle.Dalle(self.path, n_threads=1) as m1:
            self.assertEqual(m1.sample(self.text, seed=77, temperature=0.9), a)

    def test_greedy_matches_golden(self):
        # top-k with k = max(int((1 - 0.999) * 544), 1) = 1: greedy
        want = rows(golden("dalle_full", "greedy_image_tokens.npy"))
        self.assertEqual(self.model.sample(self.text, seed=9, filter_thres=0.999), want)

    def test_num_images_and_str_rows(self):
        ids = self.model.sample(self.text[0], seed=3, num_images=3)
        self.assertEqual(shape(ids), (3, 64))
        self.assertEqual(self.model.sample([self.text[0]] * 3, seed=3), ids)

    def test_prime(self):
        prime = [r[:10] for r in self.image]
        ids = self.model.sample(self.text, seed=8, prime=prime)
        self.assertEqual([r[:10] for r in ids], prime)
        ids = self.model.sample(self.text, seed=8, prime=self.image, n_prime=4)
        self.assertEqual([r[:4] for r in ids], [r[:4] for r in self.image])
        # one prime row for the whole batch
        ids = self.model.sample(self.text, seed=8, prime=self.image[0][:6])
        self.assertEqual([r[:6] for r in ids], [self.image[0][:6]] * 2)
        with self.assertRaises(ValueError):
            self.model.sample(self.text, prime=self.image, n_prime=65)
        bad = [r[:5] for r in self.image]
        bad[1][2] = 99999
        with self.assertRaises(dalle.DalleError) as cm:
            self.model.sample(self.text, prime=bad)
        self.assertIn("prime[1][2]", str(cm.exception))

    def test_bad_parameters(self):
        m = self.model
        for kw, word in (({"filter_thres": 1.5}, "filter_thres"),
                         ({"filter_thres": -0.1}, "filter_thres"),
                         ({"filter_thres": 1.0}, "filter_thres"),
                         ({"temperature": 0.0}, "temperature"),
                         ({"temperature": float("inf")}, "temperature"),
                         ({"cond_scale": float("nan")}, "cond_scale")):
            with self.subTest(**kw):
                with self.assertRaises(dalle.DalleError) as cm:
                    m.sample(self.text, **kw)
                self.assertEqual(cm.exception.status, dalle.Status.INVALID_ARGUMENT)
                self.assertIn(word, str(cm.exception))
        bad = [row[:] for row in self.text]
        bad[0][0] = -5
        with self.assertRaises(dalle.DalleError) as cm:
            m.sample(bad)
        self.assertIn("text[0][0]", str(cm.exception))
        with self.assertRaises(TypeError):
            m.sample(self.text, seed=1.5)
        with self.assertRaises(ValueError):
            m.sample(self.text, seed=-1)
        with self.assertRaises(TypeError):
            m.sample(self.text, temperature=None)

    def test_progress_and_abort(self):
        seen = []
        ids = self.model.sample(self.text[0], seed=2, progress=lambda d, t: seen.append((d, t)))
        self.assertTrue(seen)
        self.assertEqual(seen[-1][0], seen[-1][1])
        self.assertEqual([d for d, _ in seen], sorted(d for d, _ in seen))
        self.assertEqual(self.model.sample(self.text[0], seed=2), ids)
        calls = []

        def abort():
            calls.append(1)
            return len(calls) > 3
        with self.assertRaises(dalle.DalleError) as cm:
            self.model.sample(self.text[0], seed=2, abort=abort)
        self.assertEqual(cm.exception.status, dalle.Status.ABORTED)

        class Boom(Exception):
            pass

        def progress(d, t):
            raise Boom()
        with self.assertRaises(Boom):
            self.model.sample(self.text[0], seed=2, progress=progress)

        def reenter(d, t):
            self.model.logits(self.text[0])
        with self.assertRaises(dalle.DalleError) as cm:
            self.model.sample(self.text[0], seed=2, progress=reenter)
        self.assertIn("callback", str(cm.exception))
        # the object still works afterwards
        self.assertEqual(self.model.sample(self.text[0], seed=2), ids)

    def test_ctrl_c_stops_between_tokens(self):
        import signal
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            self.skipTest("needs the main thread and Python's default SIGINT handler")
        fired = []

        def progress(done, total):
            if not fired:
                fired.append(done)
                signal.raise_signal(signal.SIGINT)   # as if Ctrl-C were pressed now
        with self.assertRaises(KeyboardInterrupt):
            self.model.sample(self.text, seed=2, progress=progress)
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
        self.assertEqual(shape(self.model.sample(self.text, seed=2)), (2, 64))

    def test_generate_text(self):
        m = self.model
        a = m.generate_text(self.text[0][:3], seed=5)
        self.assertEqual(len(a), 16)
        self.assertEqual(a[:3], self.text[0][:3])
        self.assertTrue(all(0 <= v < m.num_text_tokens + m.text_seq_len for v in a))
        self.assertEqual(m.generate_text(self.text[0][:3], seed=5), a)
        self.assertEqual(len(m.generate_text(seed=1)), 16)
        with self.assertRaises(dalle.DalleError) as cm:
            m.generate_text([10 ** 6], seed=1)
        self.assertEqual(cm.exception.status, dalle.Status.INVALID_ARGUMENT)
        with self.assertRaises(ValueError):
            m.generate_text([1] * 17)

    def test_vae_bundle_has_no_sample(self):
        with dalle.Vae(bundle("dalle_full")) as v:
            self.assertFalse(hasattr(v, "sample"))
            self.assertEqual(v.image_seq_len, 64)


if __name__ == "__main__":
    unittest.main()
