"""The demo's last steps (issue 15): the evidence report written to a file that outlives the
demo, and the dashboard served with a token to sign in with. On a terminal the server
stays up until Enter; without one (CI) it stops at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from dumpsafe.demo_api import _free_port, _wait_healthy

REPORT = Path("dumpsafe-demo-report.html")  # in the directory `make demo` runs from (gitignored)


def dashboard_tour(demo: Any) -> None:
    demo.step("Evidence: every verification, drill and backup kept beside the records; the report an auditor reads")
    demo.run("backup", "history", demo.run("backup", "list", "demo", "--json", capture_json=True, show=False)[0]["id"])
    out = REPORT.resolve()
    demo.run("report", "--since", "90d", "--format", "html", "--output", str(out))
    demo.run("report", "demo", "--format", "md")

    demo.step("Dashboard: dumpsafe serve at /, sign in with a token (held in the tab's sessionStorage only)")
    token = demo.run("token", "create", "--admin", "--scope", "backups:read", "--scope", "backups:write", "--name",
                     "dashboard", "--expires", "1d", show=False).stdout.strip()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = [sys.executable, "-m", "dumpsafe", "--config", str(demo.config), "serve", "--port", str(port), "--no-scheduler"]
    proc = subprocess.Popen(argv, env=demo.env, cwd=demo.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(url.rstrip("/"), proc)
        demo.console.print(f"evidence report written to {out}", highlight=False)
        demo.console.print(f"dashboard: [bold]{url}[/] (sign in with this throwaway demo token: {token})", highlight=False)
        if sys.stdin.isatty():
            demo.console.print("press Enter to stop the dashboard and end the demo", highlight=False)
            try:
                input()
            except EOFError:
                pass
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
