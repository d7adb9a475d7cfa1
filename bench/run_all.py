"""`make bench`: every benchmark in turn, each printing its own figures (the README holds the latest ones).

Each runs as its own process with its defaults, so a failing one does not hide the rest; `--only a,b` picks some
(names without the bench_ prefix), `--quick` asks the ones that can for shorter runs. Figures depend on the load:
run on a quiet machine (the load average is printed before each).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# cheap ones first; the node and hollow-node benchmarks start whole clusters
ORDER = ["store", "apiserver", "scheduler", "controllers", "dns", "proxy", "pod_startup", "node", "ingress", "hollow"]
QUICK = {"apiserver": ["--quick"], "hollow": ["--nodes", "1000", "--pods", "2000"], "node": ["--replicas", "30"],
         "controllers": ["--replicas", "200"], "scheduler": ["--nodes", "100", "--pods", "200"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", default="", help="comma-separated benchmarks (default: all)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or ORDER
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"no benchmark {name}", file=sys.stderr)
            return 2
        extra = QUICK.get(name, []) if args.quick else []
        print(f"\n=== bench_{name} {' '.join(extra)} (load average {os.getloadavg()[0]:.1f})", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"=== bench_{name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
