"""GET /v1/backups/{id}/export (issue 19): the verified plain pg_dump archive (or uploads tar)
as a streaming download, for a machine that will restore it with pg_restore (or tar) alone.

The service writes into a bounded queue from a worker thread; the response reads from it.
The stored bytes' SHA-256 is known only at the end: on a mismatch (or any failure once bytes
were sent) the stream is cut without its final chunk, so the client sees a broken transfer,
never a complete-looking file. A client that goes away stops the export."""

from __future__ import annotations

import queue
import threading
from typing import Annotated, Any, Iterator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dumpsafe.fronts.api.deps import Guarded
from dumpsafe.fronts.api.routes.operations import BackupId
from dumpsafe.fronts.api.schemas import errors
from dumpsafe.inputs import QueryFlag

router = APIRouter(prefix="/v1/backups", tags=["backups"])
_DONE = object()


class _Gone(Exception):
    """The client went away: the exporting thread stops writing."""


class _QueueWriter:
    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.closed = threading.Event()

    def write(self, data: bytes) -> int:
        while True:
            if self.closed.is_set():
                raise _Gone()
            try:
                self.q.put(bytes(data), timeout=0.5)
                return len(data)
            except queue.Full:
                continue

    def flush(self) -> None:
        pass


def _stream(svc: Any, backup_id: str, uploads: bool, first: Any, w: _QueueWriter, t: threading.Thread) -> Iterator[bytes]:
    try:
        item = first
        while item is not _DONE:
            if isinstance(item, BaseException):
                raise item  # cuts the response: the client sees an incomplete transfer
            yield item
            item = w.q.get()
    finally:
        w.closed.set()
        t.join(timeout=30)


@router.get("/{backup_id}/export", summary="Download the plain pg_dump archive (or uploads tar), SHA-256 checked",
            response_class=StreamingResponse, responses={**errors(403, 404, 409, 502),
                                                         200: {"content": {"application/octet-stream": {}}}})
def export_backup(backup_id: BackupId, svc: Guarded, uploads: Annotated[QueryFlag, Query()] = False) -> StreamingResponse:
    w = _QueueWriter()

    def run() -> None:
        try:
            svc.export(backup_id, w, uploads=uploads)
            w.q.put(_DONE)
        except _Gone:
            pass
        except BaseException as e:  # handed to the response side
            if not w.closed.is_set():
                w.q.put(e)

    t = threading.Thread(target=run, name="export", daemon=True)
    t.start()
    first = w.q.get()  # a refusal or a missing object fails before any byte: a proper error status
    if isinstance(first, BaseException):
        t.join(timeout=30)
        raise first
    name = f"{backup_id}.{'tar' if uploads else 'dump'}"
    return StreamingResponse(_stream(svc, backup_id, uploads, first, w, t), media_type="application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
