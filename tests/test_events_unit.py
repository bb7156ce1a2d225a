from __future__ import annotations

import re

import pytest

from osrewind.queries.events import describe, glob_to_re2


@pytest.mark.parametrize("glob,yes,no", [
    ("**/out.txt", ["out.txt", "build/out.txt", "/tmp/x/out.txt"], ["out.txt.bak", "/tmp/xout.txt"]),
    ("/etc/*", ["/etc/hosts"], ["/etc/ssl/certs", "/etcx/a"]),
    ("/etc/**", ["/etc/hosts", "/etc/ssl/certs/a.pem"], ["/var/etc/x"]),
    ("/tmp/f?.[ch]", ["/tmp/f1.c", "/tmp/fa.h"], ["/tmp/f12.c", "/tmp/f1.o"]),
    ("/tmp/[!a]*", ["/tmp/b"], ["/tmp/a1"]),
    ("/a+b(c)", ["/a+b(c)"], ["/aab(c)"]),
])
def test_glob(glob, yes, no):
    rx = re.compile(glob_to_re2(glob))
    assert all(rx.match(p) for p in yes) and not any(rx.match(p) for p in no)


def row(kind, ret=0, a0=0, a1=0, a2=0, a3=0, path="", path2="", argv=()):
    return {"kind": kind, "ret": ret, "a0": a0, "a1": a1, "a2": a2, "a3": a3, "path": path, "path2": path2,
            "argv": list(argv), "tid": 1}


def test_describe():
    assert describe(row("open", -2, -100, path="/nope")) == "open /nope flags=0o0 -> ENOENT"
    assert describe(row("open", 3, -100, a2=0o2000000, path="/x")) == "open /x flags=0o2000000 O_CLOEXEC -> fd 3"
    assert describe(row("wait", 42, a0=9)) == "wait -> 42 killed by SIGKILL"
    assert describe(row("wait", 42, a0=3 << 8)) == "wait -> 42 exited 3"
    assert describe(row("signal_generate", 0, 15, 77, path="sleep")) == "send SIGTERM to 77 (sleep) delivered"
    assert describe(row("fork", 0, 1, 2, 0x10000 | 0x100)) == "fork -> thread 2"
    assert describe(row("rename", 0, path="a", path2="b")) == "rename a -> b"
    assert describe(row("close", -9, 5)) == "close fd 5 -> EBADF"
