"""Request body limit: anything over ``limit`` bytes is answered 413 before it is parsed."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1 << 20  # 1 MiB: the largest legitimate request is a few hundred bytes


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a declared Content-Length over the limit is refused at once; a body
    sent without one is counted while it is read and refused as soon as it goes over."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": "too_large", "detail": f"the request body is over {self.limit} bytes "
                                                           "(send a smaller request)"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        state = {"seen": 0, "over": False, "started": False}

        async def counted() -> Message:
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    raise _TooLarge()
            return msg

        async def guarded_send(msg: Message) -> None:
            if state["over"]:
                return  # whatever the app answers to a cut body, the answer is 413
            if msg["type"] == "http.response.start":
                state["started"] = True
            await send(msg)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            pass
        if state["over"] and not state["started"]:
            await self._refuse(send)
