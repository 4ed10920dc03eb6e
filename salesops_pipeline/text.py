"""Showing text that came from outside (a provider's callId, an error, a username) to a person.

Such text may carry characters that a terminal or a markdown renderer obeys instead of
showing: an escape sequence that rewrites the screen, a newline that fakes a line or a table
row, a pipe that splits a cell, a link or HTML. These helpers make it inert and visible. Plain
functions, nothing of Dagster, so the command line and the assets share them.
"""

import re
import unicodedata
from collections.abc import Iterable

# Control and format characters (ESC, CR, LF, TAB, DEL, C1 controls, bidi overrides) and the
# Unicode line and paragraph separators: none of them is text a person should be given raw.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# What markdown (CommonMark, GitHub tables) or HTML would read as syntax inside a table cell;
# a backslash before any of them makes the renderer show it as it is.
_MARKDOWN_SPECIALS = re.compile(r"([\\|`*_\[\]<>&~#])")


def _visible(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_safe(text: object) -> str:
    """`text` with every control or format character shown as an escape (`\\x1b`, `\\n`), so it
    can neither drive the terminal nor start a line of its own."""
    return "".join(
        _visible(char) if unicodedata.category(char) in _INVISIBLE_CATEGORIES else char
        for char in str(text)
    )


def markdown_cell(text: object) -> str:
    """`text` as the literal content of a markdown table cell (or any inline markdown): on one
    line, with pipes, backslashes and markdown or HTML syntax shown rather than obeyed."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", terminal_safe(text))


def markdown_list(items: Iterable[str], *, empty: str = "none") -> str:
    """A markdown bullet list of `items`, which the caller has already made safe, or `empty`."""
    return "\n".join(f"- {item}" for item in items) or empty
