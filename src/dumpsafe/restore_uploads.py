"""The uploads tree's side of a restore: the archive extracted into a staging tree beside the
live one (unsafe members refused), and the staged tree swapped in right after the database
swap, as a journaled step (restore_journal rolls it forward after a kill)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from dumpsafe import fetch, restore_journal
from dumpsafe.engines import files
from dumpsafe.errors import RestoreFailed
from dumpsafe.failpoints import failpoint


def extract_staged(stream: fetch.PlainStream, staged: Path) -> files.TreeStats:
    try:
        return files.extract_tree(stream, staged)
    except (files.UnsafeMember, tarfile.FilterError) as e:
        raise RestoreFailed(f"refusing to restore the uploads tree: {e}; nothing was changed") from None
    except OSError as e:
        raise fetch.LocalFailure(f"cannot write the uploads staging tree {staged} ({e.strerror})") from None


def swap_uploads(jr: restore_journal.Journal) -> None:
    """Right after the database swap: the staged uploads tree in place of the live one."""
    staged, live = jr.data.get("uploads_staged"), jr.data.get("uploads_live")
    if staged:
        jr.step("uploads")
        try:
            files.swap_in(Path(staged), Path(live))
        except OSError as e:
            raise RestoreFailed(
                f"database {jr.data['database']!r} was restored, but swapping in the uploads tree at {live} "
                f"failed ({e.strerror})"
            ) from None
    failpoint("restore.after_uploads_swap")
