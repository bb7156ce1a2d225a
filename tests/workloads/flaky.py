"""A flaky program, for osrewind hunt: a random draw decides whether it writes the file it then
reads, so it fails (FileNotFoundError, exit 1) about half the time. Usage: flaky.py WORKDIR"""

import os
import random
import sys

work = sys.argv[1]
ready = os.path.join(work, "ready")
if random.random() < 0.5:
    with open(ready, "w") as f:
        f.write("ok\n")
with open(ready) as f:   # fails when the draw said no
    print(f.read().strip())
os.unlink(ready)
