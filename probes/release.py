"""The detach helper: holds a finished recording's classic tracepoints and releases them.

Run as its own small program (``python -S -I release.py READY FD...``), started by
``loader.Probe.close`` with the tracepoint perf event fds passed to it: it waits until the pipe end
READY reaches EOF (the recorder has closed its own copies, so these are the last references), then
closes the fds in the given order from RELEASE_THREADS threads (the kernel waits for RCU grace
periods in each release; many at once overlap them) and exits.

A program of its own rather than a fork of the recorder: at the end of a recording the recorder
holds about a gigabyte (its rings, the compiler, the decoded batches) and then catches the store up.
A forked child shared all of that copy-on-write for the 2-4 s it lives, so every page the catch-up
wrote was copied first, and the fork itself copied the page tables. This file imports nothing from
osrewind (and Python starts without site): it starts in milliseconds and holds a few megabytes.
"""

import os
import sys
import threading

RELEASE_THREADS = 16


def main(argv: list[str]) -> None:
    ready, fds = int(argv[1]), [int(a) for a in argv[2:]]
    os.read(ready, 1)   # EOF: the recorder has dropped its references
    todo = iter(fds)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                fd = next(todo, None)
            if fd is None:
                return
            try:
                os.close(fd)
            except OSError:
                pass

    threads = [threading.Thread(target=work) for _ in range(min(RELEASE_THREADS, len(fds)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(sys.argv)
