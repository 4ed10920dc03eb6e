"""Text from outside shown to a person: in a terminal, control and format characters appear as
escapes and never act; in a markdown table cell, the text stays on one line and in one cell,
and markdown or HTML syntax in it is shown, not rendered. Plain functions, no Dagster."""

import pytest

from salesops_pipeline.text import markdown_cell, terminal_safe


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain-102224021", "plain-102224021"),
        ("héllo wörld €", "héllo wörld €"),  # printable text is left alone
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("line\r\nfake", "line\\r\\nfake"),
        ("tab\tbell\x07del\x7f", "tab\\tbell\\x07del\\x7f"),
        ("c1\x9b31m", "c1\\x9b31m"),  # the one-byte CSI
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("sep\u2028para\u2029", "sep\\u2028para\\u2029"),
    ],
)
def test_terminal_safe(text, shown):
    assert terminal_safe(text) == shown


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("lea@example.com", "lea@example.com"),
        ("2025-04-14T10:30:00", "2025-04-14T10:30:00"),
        ("a|b", "a\\|b"),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\\\nlines"),
        ("<img src=x>", "\\<img src=x\\>"),
        ("*b* _i_ `c`", "\\*b\\* \\_i\\_ \\`c\\`"),
        ("[l](http://x)", "\\[l\\](http://x)"),
        ("&lt; ~~s~~ #h", "\\&lt; \\~\\~s\\~\\~ \\#h"),
    ],
)
def test_markdown_cell(text, cell):
    assert markdown_cell(text) == cell
