"""Recorded by tests/test_record_kernel.py: fd and process steps, each followed by a marker.

After step N the program makes the directory ``<work>/marks/step-N`` (a recorded mkdir: no fd) and
sleeps, so the test can rewind to an instant between two markers and know exactly what must be open.
Usage: fdsteps.py WORKDIR
"""

import os
import sys
import threading
import time

work = sys.argv[1]
marks = os.path.join(work, "marks")
os.makedirs(marks, exist_ok=True)
os.chdir(work)
PAUSE = 0.08


def mark(n: int) -> None:
    os.mkdir(os.path.join(marks, f"step-{n}"))
    time.sleep(PAUSE)


mark(0)
a = os.open("a.txt", os.O_WRONLY | os.O_CREAT, 0o644)       # fd 3, inheritable below
os.set_inheritable(a, True)
mark(1)
os.dup2(a, 10)                                               # fd 10, no CLOEXEC (dup2)
r, w = os.pipe2(os.O_CLOEXEC)                                # fds 4, 5, CLOEXEC
mark(2)
child = os.fork()
if child == 0:
    # child: inherits 3, 4, 5, 10; exec drops the CLOEXEC pipe; sleep holds 3 and 10
    os.execv("/bin/sleep", ["sleep", "0.6"])
mark(3)
os.rename("a.txt", "b.txt")                                  # fd 3 and 10 now show b.txt
os.close(a)                                                  # fd 3 closed in the parent only
mark(4)
os.mkdir("sub")
os.chdir("sub")
c = os.open("c.txt", os.O_RDWR | os.O_CREAT, 0o644)          # fd 3 again: reused number, new file


def in_thread() -> None:
    global t_fd
    t_fd = os.open("/etc/hostname", os.O_RDONLY)             # opened by a thread: the process's fd


t_fd = -1
th = threading.Thread(target=in_thread)
th.start()
th.join()
mark(5)
os.unlink("c.txt")                                           # fd 3 -> (deleted)
os.close(r)
os.close(w)
os.closerange(10, 11)
mark(6)
_, status = os.waitpid(child, 0)
mark(7)
sys.exit(3)
