"""Recorded by bench/concurrent_renames.py: several processes rename one directory back and
forth (d1 <-> d2) at the same time while others hold it (or a directory inside it) as their cwd and
read /proc/self/cwd in a loop. Each read is reported with the CLOCK_MONOTONIC instants just before
and just after it.

Usage: renamers.py WORKDIR REPORT SECONDS
"""

import json
import os
import sys
import time

work, report, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(os.path.join(work, "d1", "inner"))
end = time.monotonic() + seconds
kids = []
r, w = os.pipe()
ready_r, ready_w = os.pipe()
for i in range(2):  # the holders: one in the directory, one in a directory inside it
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.chdir(os.path.join(work, "d1", "inner") if i else os.path.join(work, "d1"))
        os.write(ready_w, b"x")
        out = []
        while time.monotonic() < end:
            t0 = time.monotonic_ns()
            cwd = os.readlink("/proc/self/cwd")
            t1 = time.monotonic_ns()
            out.append({"pid": os.getpid(), "t0": t0, "t1": t1, "cwd": cwd})
            time.sleep(0.002)
        os.write(w, (json.dumps(out) + "\n").encode())
        os._exit(0)
    kids.append(pid)
os.read(ready_r, 1)
os.read(ready_r, 1)
for _ in range(3):  # the renamers
    pid = os.fork()
    if pid == 0:
        a, b = (os.path.join(work, "d1"), os.path.join(work, "d2"))
        while time.monotonic() < end:
            for src, dst in ((a, b), (b, a)):
                try:
                    os.rename(src, dst)
                except OSError:
                    pass
        os._exit(0)
    kids.append(pid)
os.close(w)
with os.fdopen(r) as f:
    lines = [json.loads(line) for line in f]
for pid in kids:
    os.waitpid(pid, 0)
with open(report, "w") as f:
    json.dump([x for line in lines for x in line], f)
