"""Recorded by tests: syscalls that fail on purpose, then a child killed by SIGKILL from its parent.
Usage: failing.py WORKDIR"""

import os
import signal
import sys
import time

work = sys.argv[1]
os.chdir(work)
try:
    os.open(os.path.join(work, "does-not-exist"), os.O_RDONLY)       # ENOENT
except FileNotFoundError:
    pass
with open("not-executable", "w") as f:
    f.write("#!/bin/sh\n")
os.chmod("not-executable", 0o644)
pid = os.fork()
if pid == 0:
    try:
        os.execv(os.path.join(work, "not-executable"), ["not-executable"])  # EACCES, even for root
    except PermissionError:
        os._exit(0)
os.waitpid(pid, 0)
try:
    os.close(987)                                                     # EBADF
except OSError:
    pass
victim = os.fork()
if victim == 0:
    time.sleep(30)
    os._exit(0)
time.sleep(0.1)
os.kill(victim, signal.SIGKILL)
os.waitpid(victim, 0)
print(victim)
