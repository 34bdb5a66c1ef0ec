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

_ID = "acme.app.20261122T023000Z.k3j7x2ab"
# examples under a command's own --help, by command path
COMMAND_EXAMPLES = {
    "backup create": ["dumpsafe backup create acme", "dumpsafe backup create acme --database app --label before-upgrade --pin",
                      "dumpsafe backup create acme --json"],
    "backup list": ["dumpsafe backup list acme", "dumpsafe backup list --store offsite --wide", "dumpsafe backup list --json"],
    "backup verify": [f"dumpsafe backup verify {_ID}", f"dumpsafe backup verify {_ID} --drill"],
    "backup restore": [f"dumpsafe backup restore {_ID} --dry-run", f"dumpsafe backup restore {_ID} --yes",
                       f"dumpsafe backup restore {_ID} --database app_copy --no-uploads",
                       f"dumpsafe backup restore {_ID} --table public.orders --into-schema restored_20261127"],
    "backup export": [f"dumpsafe backup export {_ID} --output app.dump", f"dumpsafe backup export {_ID} --uploads -o uploads.tar"],
    "prune": ["dumpsafe prune --dry-run", "dumpsafe prune acme"],
    "status": ["dumpsafe status", "dumpsafe status --format prometheus"],
    "schedule export": ["dumpsafe schedule export --format cron", "dumpsafe schedule export --format systemd --output-dir units",
                        "dumpsafe schedule export --format kubernetes --image registry.example/dumpsafe:0.1.0"],
    "token create": ["dumpsafe token create --tenant acme --scope backups:read --scope backups:create --name ci"],
    "config check": ["dumpsafe config check", "dumpsafe config check --json"],
}


def _epilog(lines: list[str]) -> str:
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines) + "\n"


# metavars for --help: what a value is, in words, instead of Typer's <str> and <list[str]>
METAVARS = {
    "--config": "FILE", "--server": "URL", "--token": "TOKEN", "--database": "DB", "--store": "NAME", "--label": "TEXT",
    "--to": "STORE", "--identity": "FILE", "--uploads-to": "DIR", "--output": "FILE", "--output-dir": "DIR",
    "--tenant": "TENANT", "--scope": "SCOPE", "--expires": "DURATION", "--name": "TEXT", "--host": "HOST",
    "--port": "PORT", "--command": "PATH", "--since": "DURATION", "--table": "SCHEMA.TABLE", "--schema": "SCHEMA",
    "--into-schema": "NAME",
}


def readable_help(command: Any, path: str = "") -> None:
    """Give every option and argument of the command tree a readable metavar (NAME, FILE, [a|b|c]),
    and the commands in COMMAND_EXAMPLES their examples."""
    if path in COMMAND_EXAMPLES and not getattr(command, "epilog", None):
        command.epilog = _epilog(COMMAND_EXAMPLES[path])
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
    for name, sub in getattr(command, "commands", {}).items():
        readable_help(sub, f"{path} {name}".strip())
