"""Run one command and measure it: wall time, CPU time and the peak RSS of its process tree.

Peak RSS is sampled from /proc every 20 ms as the SUM of VmRSS over the command and all its
descendants (for dumpsafe: the Python process + pg_dump/pg_restore). Shared pages (libc,
libpq) count once per process, so this is an upper bound; a child forked and not yet
exec'd (it shares its parent's pages) is left out. The PostgreSQL server backend
that serves the dump is not in the tree and is not counted, for any tool.
CPU time is the child's rusage from wait4 (it includes every descendant it waited for).
Server CPU is the PostgreSQL cluster's CPU over the same interval (postmaster + backends,
live or exited), so "client + server" CPU compares tools whatever else the machine runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.02


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
        except OSError:
            pass
    return out


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def tree_rss(root: int) -> int:
    """Sum of resident pages (bytes) of ``root`` and its descendants right now.

    A child forked but not yet exec'd (subprocess.Popen's vfork/fork, a few ms) shares its
    parent's pages and statm reports them again; such a child (same command line as its
    parent) is not counted, so the sum is not doubled by the moment a sample falls in."""
    total, todo, seen = 0, [(root, None)], set()
    while todo:
        pid, parent_cmd = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        cmd = _cmdline(pid)
        if parent_cmd is not None and cmd == parent_cmd:
            continue
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        todo += [(c, cmd) for c in _children(pid)]
    return total


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of ``pid`` (its reaped children included)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds the whole cluster has used so far: the postmaster, its reaped children
    (backends that served finished sessions) and its live children."""
    return (_cpu_ticks(postmaster) + sum(_cpu_ticks(c) for c in _children(postmaster))) / TICK


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    peak_rss: int
    rc: int
    stderr: str = ""
    server_cpu_s: float = 0.0


def run(argv: list[str], *, env: dict | None = None, stdout=subprocess.DEVNULL, cwd: Path | None = None,
        server: int | None = None) -> Sample:
    """Run ``argv`` to completion while sampling its tree's RSS (and the cluster's CPU, given
    the postmaster pid ``server``)."""
    s0 = cluster_cpu(server) if server else 0.0
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd)
    peak = 0
    done = threading.Event()
    err: list[bytes] = []

    def drain() -> None:
        err.append(proc.stderr.read())

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            done.wait(SAMPLE_S)

    threads = [threading.Thread(target=drain, daemon=True), threading.Thread(target=sample, daemon=True)]
    for t in threads:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = 0.0
    if server:
        time.sleep(0.05)  # let the postmaster reap the backend that served the command
        server_cpu = cluster_cpu(server) - s0
    return Sample(wall, ru.ru_utime + ru.ru_stime, peak, proc.returncode,
                  b"".join(err).decode("utf-8", "replace")[-2000:], server_cpu)


@dataclass
class Series:
    """Repetitions of one case; medians are what the report shows."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add(self, s: Sample, size: int | None = None) -> None:
        if s.rc != 0:
            raise RuntimeError(f"{self.name}: exit {s.rc}: {s.stderr.strip()}")
        self.samples.append(s)
        if size is not None:
            self.sizes.append(size)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu_s for s in self.samples)

    @property
    def server_cpu(self) -> float:
        return statistics.median(s.server_cpu_s for s in self.samples)

    @property
    def rss(self) -> int:
        return max(s.peak_rss for s in self.samples)

    @property
    def size(self) -> int | None:
        return int(statistics.median(self.sizes)) if self.sizes else None

    @property
    def spread(self) -> str:
        w = [s.wall_s for s in self.samples]
        return f"{min(w):.2f}-{max(w):.2f}"
