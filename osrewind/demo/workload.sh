#!/bin/sh
# osrewind demo workload: a tiny build-like job with a background pipeline, files held open,
# a rename and a delete. `osrewind demo` records it and rewinds to the moment it opens `checkpoint`.
set -e
mkdir -p build
printf 'pear\napple\nfig\n' > input.txt
exec 7>build/job.log                      # the shell keeps a log open on fd 7
echo "job started" >&7
sleep 1 | cat > build/piped.txt &         # a background pipeline, alive at the checkpoint
sleep 0.1                                 # (give it time to start on a busy machine)
sort input.txt > build/sorted.txt
cd build
exec 8<sorted.txt                         # and reads the sorted file on fd 8
: > checkpoint                            # <- the demo shows the state at this instant
sleep 0.2
mv sorted.txt final.txt                   # fd 8 now points at final.txt
rm -f checkpoint
wait
echo "job done" >&7
exec 7>&- 8<&-
