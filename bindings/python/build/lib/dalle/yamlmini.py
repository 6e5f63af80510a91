"""A small YAML subset: enough for taming-transformers model configs.

Supported:

* block mappings nested by indentation (``key: value`` / ``key:`` + block),
* block sequences (``- item``, including ``- key: value`` mappings),
* flow sequences ``[1, 2, 3]`` and flow mappings ``{a: 1}`` of scalars
  (nesting allowed),
* scalars: integers, floats (``0.0``, ``4.5e-06``, ``1e-6``, ``.inf``,
  ``.nan``), booleans (``true``/``false``/``True``/``False``/``yes``/``no``/
  ``on``/``off``), null (``null``, ``~``, empty value), plain and quoted
  (single or double) strings,
* ``#`` comments and blank lines, a leading ``---`` document marker.

Anything else (anchors, aliases, tags, multi-line strings, block scalars
``|``/``>``, several documents, tabs for indentation) raises
:class:`YamlError` with the line number.

Floats follow OmegaConf (what taming and DALLE-pytorch load configs with):
``1e-6`` without a dot is a float too, unlike strict YAML 1.1.
"""

from __future__ import annotations

import re

__all__ = ["YamlError", "loads", "load"]


class YamlError(ValueError):
    def __init__(self, msg, line=None, source="<yaml>"):
        self.line = line
        super().__init__(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")


_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9_]*)\Z")
_HEX_RE = re.compile(r"0x[0-9a-fA-F_]+\Z")
_FLOAT_RE = re.compile(r"[-+]?([0-9][0-9_]*\.[0-9_]*|\.[0-9_]+|[0-9][0-9_]*)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"),
                   ".nan": float("nan")}
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULLS = {"", "~", "null"}


def _scalar(text: str, line: int, source: str):
    """Interpret one plain or quoted scalar."""
    t = text.strip()
    if not t:
        return None
    if t[0] in "\"'":
        q = t[0]
        if len(t) < 2 or t[-1] != q:
            raise YamlError(f"unterminated quoted string {t!r}", line, source)
        body = t[1:-1]
        if q == "'":
            return body.replace("''", "'")
        try:
            return body.encode("latin1", "backslashreplace").decode("unicode_escape") \
                if "\\" in body else body
        except UnicodeDecodeError as e:
            raise YamlError(f"bad escape in {t!r}: {e}", line, source) from None
    if t[0] in "&*!|>%@`":
        raise YamlError(f"unsupported YAML construct {t!r}", line, source)
    low = t.lower()
    if low in _NULLS:
        return None
    if low in _BOOLS:
        return _BOOLS[low]
    if _INT_RE.match(t):
        return int(t.replace("_", ""))
    if _HEX_RE.match(t):
        return int(t, 16)
    if low in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[low]
    if _FLOAT_RE.match(t):
        return float(t.replace("_", ""))
    return t


def _strip_comment(s: str) -> str:
    """Drop a ``#`` comment (one at line start or after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or s[i - 1] in " \t[{,:"):
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _split_flow(body: str, line: int, source: str):
    """Split the inside of [...] / {...} at top-level commas."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(body):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise YamlError("unbalanced brackets", line, source)
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    if depth or quote:
        raise YamlError("unbalanced brackets or quotes", line, source)
    last = body[start:]
    if last.strip() or parts:
        parts.append(last)
    if parts and not parts[-1].strip():
        parts.pop()  # a trailing comma: [1, 2, ]
    return parts


def _value(text: str, line: int, source: str):
    t = text.strip()
    if t.startswith("["):
        if not t.endswith("]"):
            raise YamlError(f"unterminated flow sequence {t!r}", line, source)
        return [_value(p, line, source) for p in _split_flow(t[1:-1], line, source)]
    if t.startswith("{"):
        if not t.endswith("}"):
            raise YamlError(f"unterminated flow mapping {t!r}", line, source)
        out = {}
        for p in _split_flow(t[1:-1], line, source):
            k, sep, v = p.partition(":")
            if not sep:
                raise YamlError(f"flow mapping entry without ':' {p!r}", line, source)
            out[_scalar(k, line, source)] = _value(v, line, source)
        return out
    return _scalar(t, line, source)


_KEY_RE = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[^\s#'"\[\]{},:][^#:]*?)\s*:(\s+|$)(?P<rest>.*)$""")


class _Parser:
    def __init__(self, text: str, source: str):
        self.source = source
        self.lines = []  # (line number, indent, content)
        for no, raw in enumerate(text.splitlines(), 1):
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise YamlError("tab in indentation", no, source)
            content = _strip_comment(raw)
            if not content.strip():
                continue
            if content.strip() == "---" and not self.lines:
                continue
            if content.strip() in ("---", "..."):
                raise YamlError("several documents are not supported", no, source)
            indent = len(content) - len(content.lstrip(" "))
            self.lines.append((no, indent, content.strip()))
        self.i = 0

    def error(self, msg, line):
        raise YamlError(msg, line, self.source)

    def parse(self):
        if not self.lines:
            return None
        value = self.block(self.lines[0][1])
        if self.i < len(self.lines):
            no, _, content = self.lines[self.i]
            self.error(f"unexpected {content!r} (bad indentation?)", no)
        return value

    def block(self, indent):
        no, ind, content = self.lines[self.i]
        if ind != indent:
            self.error("bad indentation", no)
        if content == "-" or content.startswith("- "):
            return self.sequence(indent)
        if _KEY_RE.match(content):
            return self.mapping(indent)
        # a lone scalar document or a multi-line plain scalar
        if self.i + 1 < len(self.lines) and self.lines[self.i + 1][1] >= indent:
            self.error(f"unsupported construct {content!r}", no)
        self.i += 1
        return _value(content, no, self.source)

    def nested_or_none(self, parent_indent, no):
        """The block value after ``key:`` or ``-`` with nothing else on the line."""
        if self.i < len(self.lines):
            _, ind, content = self.lines[self.i]
            if ind > parent_indent:
                return self.block(ind)
            # YAML allows a sequence at the same indent as its mapping key
            if ind == parent_indent and (content == "-" or content.startswith("- ")) \
                    and self._in_mapping:
                return self.sequence(ind)
        return None

    _in_mapping = False

    def mapping(self, indent):
        out = {}
        while self.i < len(self.lines):
            no, ind, content = self.lines[self.i]
            if ind < indent:
                break
            if ind > indent:
                self.error("bad indentation", no)
            m = _KEY_RE.match(content)
            if not m:
                if content == "-" or content.startswith("- "):
                    break
                self.error(f"expected 'key: value', got {content!r}", no)
            key = _scalar(m.group("key"), no, self.source)
            if key in out:
                self.error(f"duplicate key {key!r}", no)
            rest = m.group("rest").strip()
            self.i += 1
            if rest:
                if rest[0] in "|>":
                    self.error("block scalars (| and >) are not supported", no)
                out[key] = _value(rest, no, self.source)
            else:
                saved, self._in_mapping = self._in_mapping, True
                out[key] = self.nested_or_none(indent, no)
                self._in_mapping = saved
        return out

    def sequence(self, indent):
        out = []
        while self.i < len(self.lines):
            no, ind, content = self.lines[self.i]
            if ind != indent or not (content == "-" or content.startswith("- ")):
                if ind > indent:
                    self.error("bad indentation", no)
                break
            rest = content[1:].strip()
            if not rest:
                self.i += 1
                saved, self._in_mapping = self._in_mapping, False
                out.append(self.nested_or_none(indent, no))
                self._in_mapping = saved
            elif rest == "-" or rest.startswith("- "):
                # "- - x": a nested sequence indented past the first dash
                item_indent = ind + (len(content) - len(rest))
                self.lines[self.i] = (no, item_indent, rest)
                out.append(self.sequence(item_indent))
            elif _KEY_RE.match(rest) and not rest.startswith(("[", "{", "'", '"')):
                # "- key: value" opens a mapping indented past the dash
                item_indent = ind + (len(content) - len(rest))
                self.lines[self.i] = (no, item_indent, rest)
                saved, self._in_mapping = self._in_mapping, False
                out.append(self.mapping(item_indent))
                self._in_mapping = saved
            else:
                self.i += 1
                out.append(_value(rest, no, self.source))
        return out


def loads(text: str, source: str = "<yaml>"):
    """Parse YAML text (the subset above) into dicts, lists and scalars."""
    return _Parser(text, source).parse()


def load(path):
    """Parse a YAML file; errors name the file and line."""
    with open(path, encoding="utf-8") as f:
        return loads(f.read(), str(path))
