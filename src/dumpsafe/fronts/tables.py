"""Tables that fit the terminal, like ``restic snapshots``.

A table is a list of columns plus a list of degradation steps (a shorter form of a
column, or dropping it), least useful first. On a terminal the steps are applied in order
until the table fits; headers and most cells never wrap, only a ``flex`` column (a free
text such as NOTE or KEPT BY) wraps its cells into the width left over, and never below
its header. ``--wide`` (and output that is not a terminal) shows everything in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from rich.cells import cell_len

GAP = 2  # spaces between columns (box=None, no outer padding)
FLEX_MIN = 12  # a flex column is never narrower than this (or its header)


@dataclass(frozen=True)
class Column:
    header: str
    cells: tuple[str, ...]
    justify: str = "left"
    flex: bool = False  # free text: may wrap its cells into the width left over

    @property
    def natural(self) -> int:
        return max([cell_len(self.header), *(cell_len(c) for c in self.cells)])

    @property
    def minimum(self) -> int:
        return min(self.natural, max(cell_len(self.header), FLEX_MIN)) if self.flex else self.natural


@dataclass(frozen=True)
class Step:
    """One way to save width: replace a column's cells by a shorter form, or drop it (short=None)."""

    header: str
    short: Callable[[str], str] | None = None


def drop(header: str) -> Step:
    return Step(header)


def shorten(header: str, fn: Callable[[str], str]) -> Step:
    return Step(header, fn)


def truncate(n: int) -> Callable[[str], str]:
    return lambda s: s if cell_len(s) <= n else s[: n - 1] + "…"


@dataclass
class Layout:
    columns: list[Column]
    widths: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.widths) + GAP * max(0, len(self.widths) - 1)


def _min_total(cols: list[Column]) -> int:
    return sum(c.minimum for c in cols) + GAP * max(0, len(cols) - 1)


def fit(columns: list[Column], steps: list[Step], width: int | None) -> Layout:
    """Apply steps until the table fits ``width`` (None: no limit, everything in full)."""
    cols = list(columns)
    if width is not None:
        for step in steps:
            if _min_total(cols) <= width:
                break
            idx = next((i for i, c in enumerate(cols) if c.header == step.header), None)
            if idx is None or len(cols) == 1:
                continue
            if step.short is None:
                del cols[idx]
            else:
                cols[idx] = replace(cols[idx], cells=tuple(step.short(c) for c in cols[idx].cells))
    widths = [c.natural for c in cols]
    if width is not None:
        spare = width - (sum(widths) + GAP * max(0, len(cols) - 1))
        if spare < 0:  # shrink the flex columns (they wrap), never the others
            for i, c in enumerate(cols):
                if c.flex and spare < 0:
                    cut = min(-spare, widths[i] - c.minimum)
                    widths[i] -= cut
                    spare += cut
    return Layout(cols, widths)


def render(layout: Layout):
    """A Rich table with explicit column widths: nothing is squeezed, headers never wrap."""
    from rich.table import Table

    t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", padding=(0, 1))
    for c, w in zip(layout.columns, layout.widths):
        t.add_column(c.header, width=w, no_wrap=not c.flex, overflow="fold", justify=c.justify)  # type: ignore[arg-type]
    for row in zip(*(c.cells for c in layout.columns)):
        t.add_row(*row)
    return t
