"""A stage-like script for tests/unit/test_warm.py: hands itself to the warm server, then does
what its first argument says."""

from cnnlab.warm import handoff

handoff(__file__)

import json
import multiprocessing
import os
import sys
import time


def square(x):
    return x * x


if __name__ == "__main__":
    what = sys.argv[1]
    report = {"warm": os.environ.get("CNNLAB_WARM_CHILD") == "1", "pid": os.getpid(), "argv": sys.argv,
              "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
              "cnnlab_modules": sorted(m for m in sys.modules if m.startswith("cnnlab."))}  # fmt: skip
    if what == "helper":
        sys.path.insert(0, os.getcwd())
        import helper

        report["helper"] = helper.VALUE
    if what == "pool":
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            report["pool"] = pool.map(square, [1, 2, 3])
    print(json.dumps(report), flush=True)
    print("to stderr", file=sys.stderr)
    if what == "sleep":
        time.sleep(60)
    if what == "fail":
        raise ValueError("probe failed")
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
