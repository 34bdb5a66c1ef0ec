"""--help that reads well: examples, and a readable metavar (NAME, FILE, [a|b|c]) for every
option and argument instead of Typer's ``<str>`` and ``<list[str]>``. Imports nothing heavy."""

from __future__ import annotations

from typing import Any

EXAMPLES = """Examples:

\b
  dumpsafe init                      # write a commented sample dumpsafe.toml
  dumpsafe config check              # test every tenant's connection and every store
  dumpsafe backup create acme
  dumpsafe backup list acme
  dumpsafe backup verify acme.app.20261122T023000Z.k3j7x2ab --drill
  dumpsafe backup restore acme.app.20261122T023000Z.k3j7x2ab --dry-run
  dumpsafe --install-completion      # shell completion for bash, zsh or fish
"""


# metavars for --help: what a value is, in words, instead of Typer's <str> and <list[str]>
METAVARS = {
    "--config": "FILE", "--server": "URL", "--token": "TOKEN", "--database": "DB", "--store": "NAME", "--label": "TEXT",
    "--to": "STORE", "--identity": "FILE", "--uploads-to": "DIR", "--output": "FILE", "--output-dir": "DIR",
    "--tenant": "TENANT", "--scope": "SCOPE", "--expires": "DURATION", "--name": "TEXT", "--host": "HOST",
    "--port": "PORT", "--command": "PATH", "--since": "DURATION",
}


def readable_help(command: Any) -> None:
    """Give every option and argument of the command tree a readable metavar (NAME, FILE, [a|b|c])."""
    for param in command.params:
        argument = param.param_type_name == "argument"
        if argument:  # the name is the metavar: no "<str>" after it
            param.display_type_rich = lambda ctx: None
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        desc = getattr(param, "type_descriptor", None)
        choices = desc.choices if desc is not None and desc.is_choice else getattr(getattr(param, "type", None), "choices", None)
        if choices:
            param.metavar = "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
        elif argument:
            param.metavar = (param.name or "value").upper()
        else:
            longest = max(param.opts, key=len)
            param.metavar = METAVARS.get(longest, longest.lstrip("-").upper().replace("-", "_"))
    for sub in getattr(command, "commands", {}).values():
        readable_help(sub)
