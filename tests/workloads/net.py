"""Recorded by tests: TCP over loopback to itself, then a Unix stream socket, then UDP, each step
followed by a recorded marker (mkdir marks/<name>) and a pause. Usage: net.py WORKDIR [PAUSE]"""

import os
import socket
import sys
import time

work = sys.argv[1]
marks = os.path.join(work, "marks")
os.makedirs(marks, exist_ok=True)
PAUSE = float(sys.argv[2]) if len(sys.argv) > 2 else 0.06


def mark(name: str) -> None:
    os.mkdir(os.path.join(marks, name))
    time.sleep(PAUSE)


# TCP: listener, connect to itself, 1000 bytes one way and 300 back, half-close, close
lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.bind(("127.0.0.1", 0))
lst.listen()
mark("tcp-listening")
cli = socket.create_connection(lst.getsockname())
srv, _ = lst.accept()
mark("tcp-connected")
cli.sendall(b"a" * 1000)
got = b""
while len(got) < 1000:
    got += srv.recv(4096)
srv.sendall(b"b" * 300)
got = b""
while len(got) < 300:
    got += cli.recv(4096)
mark("tcp-exchanged")
cli.shutdown(socket.SHUT_WR)
assert srv.recv(10) == b""
# the client's FIN acked (FIN_WAIT2, TCP_INFO's first byte) before anything closes: the peer's
# delayed ACK can come later than a pause on a loaded machine, and then after cli.close()
TCP_FIN_WAIT2 = 5   # include/net/tcp_states.h
deadline = time.monotonic() + 5
while cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_FIN_WAIT2 and time.monotonic() < deadline:
    time.sleep(0.002)
mark("tcp-half-closed")
srv.close()
cli.close()
mark("tcp-closed")

# Unix stream socket
path = os.path.join(work, "u.sock")
ul = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ul.bind(path)
ul.listen()
uc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
uc.connect(path)
us, _ = ul.accept()
uc.sendall(b"u" * 700)
got = b""
while len(got) < 700:
    got += us.recv(4096)
mark("unix-exchanged")
for s in (uc, us, ul):
    s.close()

# UDP: a bound receiver and a connected sender
ur = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ur.bind(("127.0.0.1", 0))
uw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
uw.connect(ur.getsockname())
uw.send(b"d" * 123)
ur.recvfrom(4096)
uw.send(b"d" * 77)
ur.recvfrom(4096)
mark("udp-exchanged")
ur.close()
uw.close()
mark("done")
