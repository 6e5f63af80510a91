"""The API reference is complete and in sync with the headers: every symbol
libdalle exports is declared in a public header (include/dalle/*.h) with a
doc comment and listed in docs/api.md, which is what docs/gen_api.py makes
of the headers."""
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("DALLE_BUILD_DIR", os.path.join(REPO, "build"))
LIB = os.environ.get("DALLE_LIBRARY", os.path.join(BUILD, "lib", "libdalle.so.1"))
sys.path.insert(0, os.path.join(REPO, "docs"))
import gen_api  # noqa: E402


def exported_symbols():
    out = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtDdBbRr":
            names.add(parts[2].split("@")[0])
    return names


class ApiDocs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sections = gen_api.parse_headers()
        cls.documented = {names[0]: doc for _, entries in cls.sections
                          for names, _, doc in entries if names}

    def test_api_md_is_generated_from_the_header(self):
        with open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8") as f:
            self.assertEqual(f.read(), gen_api.render(self.sections),
                             "docs/api.md is stale: run python3 docs/gen_api.py")

    def test_every_declaration_has_a_doc_comment(self):
        undocumented = sorted(n for n, doc in self.documented.items() if not doc.strip())
        self.assertEqual(undocumented, [])

    @unittest.skipUnless(os.path.exists(LIB), f"{LIB} not built")
    def test_every_exported_symbol_is_documented(self):
        exported = exported_symbols()
        self.assertGreater(len(exported), 50)
        self.assertEqual(sorted(exported - set(self.documented)), [],
                         "exported but not declared with DALLE_API in the header")
        inline = {names[0] for _, entries in self.sections for names, decl, _ in entries
                  if names and decl.startswith("static inline")}
        self.assertEqual(sorted(set(self.documented) - exported - inline), [],
                         "declared but not exported")
        for name in exported:
            self.assertRegex(name, r"^(dalle|clip)_")


if __name__ == "__main__":
    unittest.main()
