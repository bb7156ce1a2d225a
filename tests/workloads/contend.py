"""Recorded by tests: a CPU-bound process and a sleeper that also spins, both pinned to CPU 0.

The sleeper marks each phase with a recorded mkdir (marks/sleep-N before sleeping, marks/spin-N
before spinning). Usage: contend.py WORKDIR"""

import os
import sys
import time

work = sys.argv[1]
marks = os.path.join(work, "marks")
os.makedirs(marks, exist_ok=True)
os.sched_setaffinity(0, {0})


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


hog = os.fork()
if hog == 0:
    spin(1.6)
    os._exit(0)
sleeper = os.fork()
if sleeper == 0:
    for i in range(5):
        os.mkdir(os.path.join(marks, f"sleep-{i}"))
        time.sleep(0.12)
        os.mkdir(os.path.join(marks, f"spin-{i}"))
        spin(0.08)
    os._exit(0)
os.waitpid(sleeper, 0)
os.waitpid(hog, 0)
print(hog, sleeper)
