"""Render bench/RESULTS.md again from a results JSON (after a change to report.py, without rerunning).

    python bench/rerender.py bench/results/10GB.json [--out bench/RESULTS.md]

Each case is rebuilt from its per-repetition walls, its median CPU, its peak RSS and its
per-step profile (medians), which is all report.render uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from measure import Sample, Series  # noqa: E402
from run import kept_sections  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args()
    data = json.loads(args.results.read_text())
    series: dict[str, Series] = {}
    for name, d in data["series"].items():
        s = Series(name)
        prof = d.get("profile")
        err = report.PROFILE + json.dumps({"op": name, "steps": [[k, v] for k, v in prof.items()]}) if prof else ""
        for wall in d["walls"]:
            s.samples.append(Sample(wall, d["cpu_s"], d["peak_rss"], 0, err, d["server_cpu_s"]))
        if d.get("size") is not None:
            s.sizes = [d["size"]] * len(d["walls"])
        series[name] = s
    text = report.render(data["meta"], series, args.results.parent)
    args.out.write_text(text + kept_sections(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
