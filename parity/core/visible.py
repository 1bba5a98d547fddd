"""Text shown to a person with its invisible characters made visible.

Prompts, case names and file names come from case files and may hold terminal escape sequences (ESC [2J clears a
screen), bidirectional overrides (U+202E reverses what follows), NUL bytes or zero-width characters. The report,
the Markdown summary and the terminal show each such character as an escape (`\\x1b`, `\\u202e`), never raw;
line breaks and tabs stay.
"""

from __future__ import annotations

import unicodedata

_KEPT = {"\n", "\t"}
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def visible(text: str) -> str:
    """`text` with every control, format, private-use, unassigned or separator character written as an escape."""
    if text.isprintable() and "\n" not in text and "\t" not in text:
        return text
    return "".join(ch if ch in _KEPT or unicodedata.category(ch) not in _HIDDEN else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
