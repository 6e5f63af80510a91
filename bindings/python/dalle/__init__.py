"""libdalle's Python side.

Importing this package loads no C library: the checkpoint converter
(``python3 -m dalle.convert``) and the bundle reader/writer (``dalle.bundle``)
are pure Python (standard library only, plus the system's libzstd through
ctypes for compression).
"""

__version__ = "1.0.0"
