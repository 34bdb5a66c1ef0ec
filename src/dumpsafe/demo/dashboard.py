"""The demo's last steps (issue 15): the evidence report written to a file that outlives the
demo, and the dashboard served with a token to sign in with. On a terminal the server
stays up until Enter; without one (CI) it stops at once."""

from __future__ import annotations

import sys
from pathlib import Path

from dumpsafe.demo.runner import Demo

REPORT = Path("dumpsafe-demo-report.html")  # in the directory `make demo` runs from (gitignored)


def dashboard_tour(demo: Demo) -> None:
    demo.step("Evidence: every verification, drill and backup kept beside the records; the report an auditor reads")
    demo.run("backup", "history", demo.run("backup", "list", "demo", "--json", capture_json=True, show=False)[0]["id"])
    out = REPORT.resolve()
    demo.run("report", "--since", "90d", "--format", "html", "--output", str(out))
    demo.run("report", "demo", "--format", "md")

    demo.step("Dashboard: dumpsafe serve at /, sign in with a token (held in the tab's sessionStorage only)")
    token = demo.run("token", "create", "--admin", "--scope", "backups:read", "--scope", "backups:write", "--name",
                     "dashboard", "--expires", "1d", show=False).stdout.strip()
    with demo.serving() as url:
        demo.console.print(f"evidence report written to {out}", highlight=False)
        demo.console.print(f"dashboard: [bold]{url}/[/] (sign in with this throwaway demo token: {token})", highlight=False)
        if sys.stdin.isatty():
            demo.console.print("press Enter to stop the dashboard and end the demo", highlight=False)
            try:
                input()
            except EOFError:
                pass
