"""README.md and docs/ are examples a newcomer types: every `dumpsafe ...` command in them
(fenced or inline) must name commands and options the CLI really has (read from the
command tree at run time, so new commands count as soon as they exist), choices must be
real choices, and every backup ID shown must be a valid ID."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dumpsafe.models import ID_RE

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ID_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\.[A-Za-z0-9_~-]+\.\d{8}T\d{6}Z\.[A-Za-z0-9]+")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL_LINE = re.compile(r"^\s*(?:\w+=\S*\s+)*dumpsafe((?:\s.*)?)$")
INLINE = re.compile(r"`([^`]+)`")


def tree():
    import typer

    from dumpsafe.fronts.cli import app

    return typer.main.get_command(app)


def examples(path: Path) -> list[tuple[str, str]]:
    """(where, the text after 'dumpsafe') of every command example on the page."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) in ("", "sh", "bash", "console", "shell"):
            for n, line in enumerate(m.group(2).splitlines()):
                hit = SHELL_LINE.match(line.split(" #")[0])
                if hit:
                    out.append((f"{path.name}: {line.strip()}", hit.group(1)))
    prose = FENCE.sub("", text)
    for m in INLINE.finditer(prose):
        hit = re.search(r"(?:^|[\s(=$])dumpsafe((?:\s[^)#]*)?)", m.group(1).replace("\n", " "))
        if hit:
            out.append((f"{path.name}: `{m.group(1)}`", hit.group(1)))
    return out


def _tokens(rest: str) -> list[str]:
    toks = []
    for raw in rest.replace("\\|", "|").split():
        for part in raw.split("|"):
            part = part.strip("[](),").removesuffix("...").strip("[](),")
            if part:
                toks.append(part)
    return toks


def _options(cmd) -> dict[str, object]:
    return {o: p for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}


def _choices(param) -> list[str] | None:
    desc = getattr(param, "type_descriptor", None)
    choices = desc.choices if desc is not None and desc.is_choice else getattr(getattr(param, "type", None), "choices", None)
    return [str(getattr(c, "value", c)) for c in choices] if choices else None


def check(root, rest: str) -> list[str]:
    """Problems with one example (empty: it is a real command line)."""
    problems = []
    toks = _tokens(rest)
    cmd, i = root, 0
    root_opts = _options(root)
    while i < len(toks) and hasattr(cmd, "commands"):
        tok = toks[i]
        if tok.startswith("-"):
            if tok.split("=")[0] not in root_opts:
                problems.append(f"no option {tok} before the command")
            i += 1 if "=" in tok or getattr(root_opts.get(tok), "is_flag", True) else 2
            continue
        if tok not in cmd.commands:
            return [f"no command {tok!r} (has: {', '.join(sorted(cmd.commands))})"]
        cmd, i = cmd.commands[tok], i + 1
    opts = _options(cmd)
    for j, tok in enumerate(toks[i:], start=i):
        if not tok.startswith("-") or tok == "-":
            continue
        name = tok.split("=")[0]
        param = opts.get(name) or root_opts.get(name)
        if param is None:
            problems.append(f"{' '.join([root.name or 'dumpsafe', *toks[:i]])} has no option {name}")
            continue
        choices = _choices(param)
        if choices and "=" not in tok:
            values = []
            for v in toks[j + 1:]:  # a|b|c was split into tokens: take the run of lowercase words
                if v.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9_-]*", v):
                    break
                values.append(v)
                if v not in choices:
                    break
            problems += [f"{name} {v!r} is not one of {choices}" for v in values if v not in choices]
    return problems


def test_pages_have_examples():
    found = {p.name: len(examples(p)) for p in PAGES}
    assert found["README.md"] >= 20, found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_dumpsafe_command_in_the_docs_exists(page):
    root = tree()
    bad = {where: probs for where, rest in examples(page) if (probs := check(root, rest))}
    assert not bad, bad


def test_the_help_examples_are_real_commands_too(env):
    from dumpsafe.fronts.cli import EXAMPLES
    from dumpsafe.fronts.cli_help import COMMAND_EXAMPLES

    root = tree()
    lines = [SHELL_LINE.match(line.split(" #")[0]) for line in EXAMPLES.splitlines()]
    rests = [m.group(1) for m in lines if m]
    assert len(rests) >= 5
    for path, examples in COMMAND_EXAMPLES.items():
        assert all(e.startswith(f"dumpsafe {path} ") or e == f"dumpsafe {path}" for e in examples), path
        rests += [e[len("dumpsafe"):] for e in examples]
        shown = env.cli(*path.split(), "--help").out  # and --help shows them, one per line
        assert all(f"  {e}\n" in shown for e in examples), (path, shown)
    assert not {r: p for r in rests if (p := check(root, r))}


SOURCES = sorted((ROOT / "src" / "dumpsafe").rglob("*.py"))


@pytest.mark.parametrize("page", PAGES + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_backup_id_in_the_docs_is_valid(page):
    """Docs, and the examples in help texts, tool descriptions and error sentences."""
    ids = ID_LIKE.findall(page.read_text())
    assert all(ID_RE.match(x) for x in ids), [x for x in ids if not ID_RE.match(x)]


def test_the_checker_catches_what_it_should():
    root = tree()
    assert check(root, " backup create acme --database app --json") == []
    assert check(root, " backup restore ID --mode atomic|clean|new --dry-run") == []
    assert check(root, " backups list")[0].startswith("no command 'backups'")
    assert "has no option --jsn" in check(root, " backup list --jsn")[0]
    assert "'sideways' is not one of" in check(root, " backup restore ID --mode sideways")[0]
    assert ID_LIKE.findall("see acme.app.20261122T023000Z.k3j9x2ab") == ["acme.app.20261122T023000Z.k3j9x2ab"]
    assert not ID_RE.match("acme.app.20261122T023000Z.k3j9x2ab")  # 9 is not in the suffix alphabet
