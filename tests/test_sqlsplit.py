"""One SQL splitter for the archive's database statements and the globals script."""

from __future__ import annotations

import pytest

from dumpsafe.engines.sqlsplit import split_statements

CASES = [
    ("CREATE ROLE a;\nALTER ROLE a WITH LOGIN;\n", False, ["CREATE ROLE a", "ALTER ROLE a WITH LOGIN"]),
    ("COMMENT ON ROLE a IS 'x; y -- z';", False, ["COMMENT ON ROLE a IS 'x; y -- z'"]),
    ("CREATE ROLE \"we\"\"ird;\";", False, ['CREATE ROLE "we""ird;"']),
    ("-- a comment; with a semicolon\nCREATE ROLE b; -- trailing\n", False, ["CREATE ROLE b"]),
    ("SELECT 'it''s';", False, ["SELECT 'it''s'"]),
    ("\\connect app\nCREATE ROLE c;", True, ["CREATE ROLE c"]),
    ("\\connect app\nCREATE ROLE c;", False, ["\\connect app\nCREATE ROLE c"]),  # kept: the caller refuses it
    ("CREATE ROLE d WITH PASSWORD 'a\\b';", True, ["CREATE ROLE d WITH PASSWORD 'a\\b'"]),  # a backslash inside quotes
    ("", False, []),
    ("  ;  ;", False, []),
]


@pytest.mark.parametrize("text,drop_meta,expected", CASES)
def test_split_statements(text, drop_meta, expected):
    assert split_statements(text, drop_meta=drop_meta) == expected


def test_toc_and_globals_use_the_one_splitter():
    from dumpsafe.engines import pg_globals, toc

    assert toc.split_statements is pg_globals.split_statements is split_statements
