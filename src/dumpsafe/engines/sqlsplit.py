"""Split SQL script text (pg_dump's database statements, pg_dumpall's globals) into statements."""

from __future__ import annotations


def split_statements(text: str, *, drop_meta: bool = False) -> list[str]:
    """Statements without their final ';', trimmed; quoted literals and identifiers ('' and ""
    escapes) are kept whole and ``--`` comments dropped. ``drop_meta`` also drops psql
    meta-command lines (``\\connect ...``) where a statement would start; without it they stay
    in the text for the caller to refuse."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        c = text[i]
        if quote:
            buf.append(c)
            if c == quote:
                if i + 1 < n and text[i + 1] == quote:  # '' or "" escape
                    buf.append(text[i + 1])
                    i += 1
                else:
                    quote = None
        elif c in ("'", '"'):
            quote = c
            buf.append(c)
        elif (c == "-" and text.startswith("--", i)) or (c == "\\" and drop_meta and not "".join(buf).strip()):
            j = text.find("\n", i)  # to the end of the line
            i = n if j < 0 else j
            continue
        elif c == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(c)
        i += 1
    return out
