"""The `dalle` command as a user meets it: help, version, info, errors."""
import os
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("DALLE_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DALLE = os.path.join(BUILD, "examples", "dalle")
GOLDEN_BUNDLE = os.path.join(BUILD, "tests", "dalle_full.dalle")


def run(*args):
    return subprocess.run([DALLE, *args], capture_output=True, text=True, timeout=60)


@unittest.skipUnless(os.path.exists(DALLE), f"{DALLE} not built")
class CliTest(unittest.TestCase):
    def test_help_and_version(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: dalle COMMAND", r.stdout)
        self.assertIn("info BUNDLE", r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^dalle \d+\.\d+\.\d+ \(libdalle ABI 1\)")
        r = run("info", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: dalle info", r.stdout)

    def test_usage_errors(self):
        r = run()
        self.assertEqual(r.returncode, 2)
        r = run("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r.stderr)
        r = run("info", "--bogus", "x")
        self.assertEqual(r.returncode, 2)

    def test_info_bad_files(self):
        r = run("info", "/nonexistent/model.dalle")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn("/nonexistent/model.dalle", r.stderr)
        with tempfile.NamedTemporaryFile(suffix=".dalle") as f:
            f.write(b"not a bundle at all, just some text" * 10)
            f.flush()
            r = run("info", f.name)
            self.assertEqual(r.returncode, 1)
            self.assertIn("magic", r.stderr)

    @unittest.skipUnless(os.path.exists(GOLDEN_BUNDLE), "golden bundle not built (../shared/golden absent)")
    def test_info_golden(self):
        r = run("info", "--verify", GOLDEN_BUNDLE)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("kind dalle", r.stdout)
        self.assertIn("all checksums verified", r.stdout)
        self.assertIn("dalle.text_seq_len", r.stdout)
        self.assertRegex(r.stdout, r"text_emb\.weight\s+f32\s+\[416, 64\]")
        self.assertRegex(r.stdout, r"vae\.codebook\.weight\s+f32\s+\[128, 32\]")


if __name__ == "__main__":
    unittest.main()
