"""Text that came from a student (folder names, what their code printed) as a terminal may show it."""

from __future__ import annotations

import unicodedata

# control characters (ESC, BEL, CR, C1 controls ...), format characters (bidirectional overrides),
# surrogates, private-use and unassigned code points, line and paragraph separators
_ESCAPED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on written as a Python escape (``\\x1b``, ``\\u202e``):
    nothing a student named or printed can clear the screen, set the title, ring or overwrite a line."""
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _ESCAPED:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def utf8_safe(text: str) -> str:
    """``text`` writable as UTF-8: a lone surrogate (``'\\ud800'``, valid in JSON, not in UTF-8) becomes U+FFFD,
    so that a student's bytes never break the grader when it saves a notebook."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
