"""`python -m cnnlab.tracking sync [--uri URI] [--root DIR]`: the same as `cnnlab-sync`."""

import sys

from cnnlab.tracking.outbox import sync_main

if __name__ == "__main__":
    if sys.argv[1:2] != ["sync"]:
        sys.exit("usage: python -m cnnlab.tracking sync [--uri URI] [--root DIR]")
    sync_main(sys.argv[2:])
