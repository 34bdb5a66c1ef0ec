"""The demo's API part: `dumpsafe serve`, a scoped token, and the same backups over REST,
the remote CLI and MCP. Stops the server it started."""

from __future__ import annotations

from typing import Any

import httpx

from dumpsafe.demo.runner import Demo
from dumpsafe.devcluster import free_port


def api_tour(demo: Demo) -> None:
    demo.step("API 1/4. A read-only token for tenant demo: the secret is printed once, only its hash is kept")
    args = ("token", "create", "--tenant", "demo", "--scope", "backups:read", "--name", "demo", "--expires", "1d")
    demo.console.print(f"[bold cyan]$ dumpsafe {' '.join(args)}[/]", highlight=False)
    token = demo.run(*args, show=False).stdout.strip()
    demo.console.print(f"{token[:16]}… (the rest is the secret; shown in full once, here elided)", highlight=False)
    demo.run("token", "list")

    port = free_port()
    demo.step(f"API 2/4. dumpsafe serve: REST, MCP over HTTP at /mcp and /metrics on http://127.0.0.1:{port}")
    demo.console.print(f"[bold cyan]$ dumpsafe serve --port {port} --no-scheduler &[/]", highlight=False)
    with demo.serving(port) as url:
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.get(url + "/v1/backups", headers=headers, timeout=30)
        demo.console.print(f"GET /v1/backups -> {r.status_code}: {[b['id'] for b in r.json()]}", highlight=False)
        r = httpx.post(url + "/v1/backups", headers=headers, json={"tenant": "demo"}, timeout=30)
        demo.console.print(f"POST /v1/backups with a read-only token -> {r.status_code}: {r.json()['detail']}", highlight=False)

        demo.step("API 3/4. The same CLI against the server: DUMPSAFE_SERVER + DUMPSAFE_TOKEN (never on the command line)")
        saved = dict(demo.env)
        demo.env.update(DUMPSAFE_SERVER=url, DUMPSAFE_TOKEN=token)
        try:
            demo.run("backup", "list")
        finally:
            demo.env.clear()
            demo.env.update(saved)

        demo.step("API 4/4. MCP over streamable HTTP with the same token (the SDK's own client)")
        tools, listed = _mcp_list(url + "/mcp", headers)
        demo.console.print(f"tools: {', '.join(sorted(tools))}", highlight=False)
        demo.console.print(f"list_backups -> {[b['id'] for b in listed]}", highlight=False)


def _mcp_list(url: str, headers: dict[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def go() -> tuple[list[str], list[dict[str, Any]]]:
        transport = streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=60))
        async with Client(transport) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("list_backups", {"tenant": "demo"})
            return tools, (result.structured_content or {}).get("result", [])

    return anyio.run(go)
