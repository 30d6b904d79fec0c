"""Summarise a py-spy speedscope profile of the worker (`make bench BENCH_ARGS=--profile`): where the busy
time of the event loop and the workflow threads goes, by function, inclusive.

Run: .venv/bin/python bench/profile_summary.py bench/results/<date>-<host>-worker.speedscope.json [N]
"""

import collections
import json
import sys
from pathlib import Path

PACKAGES = ("activities", "workflows", "leadloop", "starter", "bench")  # shown from the checkout, wherever it was
IDLE = {"EpollSelector.select", "select"}  # the event loop waiting for work
NOISE = ("runners.py", "base_events.py", "events.py:80", "threading.py", "worker.py:", "<module> (<string>")


def label(frame: dict[str, object]) -> str:
    path = str(frame.get("file", ""))
    for cut in ("site-packages/", "python3.11/"):
        path = path.split(cut)[-1]
    for package in PACKAGES:
        if f"/{package}/" in path:
            path = package + "/" + path.rsplit(f"/{package}/", 1)[-1]
    return f"{frame['name']} ({path}:{frame.get('line', '')})"


def summarise(path: Path, top: int = 40) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    inclusive: collections.Counter[str] = collections.Counter()
    busy = 0.0
    for profile in data["profiles"]:
        if "MainThread" not in profile["name"] and "temporal_workflow" not in profile["name"]:
            continue  # aiosqlite's and the thread pool's threads mostly wait; their work shows in callers
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack or frames[stack[-1]]["name"] in IDLE:
                continue
            busy += weight
            for name in {label(frames[f]) for f in stack}:
                inclusive[name] += weight
    unit = data["profiles"][0].get("unit", "samples") if data["profiles"] else "samples"
    lines = [f"busy time of the event loop and the workflow threads: {busy:.1f} {unit}", ""]
    shown = 0
    for name, weight in inclusive.most_common():
        if any(n in name for n in NOISE):
            continue
        lines.append(f"{100 * weight / busy:5.1f}%  {name}")
        shown += 1
        if shown == top:
            break
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40))
