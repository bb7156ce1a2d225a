"""probes/btf.py: the kernel's struct offsets from its BTF, cached per build (no root needed)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from osrewind.probes import btf


def _blob(structs: dict[str, list[tuple[str, int, int]]], typedefs: tuple[str, ...] = ()) -> bytes:
    """A minimal BTF blob: an int type, then each struct's members (name, type id, bit offset), then
    typedefs of int."""
    strings = b"\0"
    def name(s: str) -> int:
        nonlocal strings
        off = len(strings)
        strings += s.encode() + b"\0"
        return off
    types = struct.pack("<IIII", name("int"), 1 << 24, 4, 32)  # id 1: INT
    for sname, members in structs.items():
        types += struct.pack("<III", name(sname), (4 << 24) | len(members), 64)
        for mname, mtype, bits in members:
            types += struct.pack("<III", name(mname) if mname else 0, mtype, bits)
    for tname in typedefs:
        types += struct.pack("<III", name(tname), 8 << 24, 1)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_offsets_of_the_running_kernel_are_cached_per_build(tmp_path):
    if not btf.VMLINUX.exists():
        pytest.skip("this kernel has no BTF")
    first = btf.offsets(cache=tmp_path)
    assert first is not None and set(first.fields) == {f[0] for f in btf.FIELDS}
    assert (tmp_path / f"{first.build}.json").exists()
    assert btf.offsets(cache=tmp_path) == first
    assert "-DKERNEL_IDENTITY" in first.cflags() and f"-DOFF_FDT_FD={first.fields['FDT_FD']}" in first.cflags()
    if shutil.which("bpftool"):   # the raw tracepoints' typedefs, as bpftool reads the same BTF
        dump = subprocess.run(["bpftool", "btf", "dump", "file", str(btf.VMLINUX)], capture_output=True,
                              text=True).stdout
        truth = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\[(\d+)\] TYPEDEF 'btf_trace_(\w+)'", dump, re.M)
                 if m.group(2) in btf.RAW_TPS}
        assert truth and first.raw_tps == truth


def test_members_are_found_through_anonymous_unions_and_embedded_structs(tmp_path, monkeypatch):
    # qstr-like: an anonymous struct (id 2) at 0 holding `len` at bit 32, then `name` at bit 64; and a
    # struct embedding it at byte 16 (as dentry embeds d_name)
    data = _blob({"inner": [("hash", 1, 0), ("len", 1, 32)], "qstr": [("", 2, 0), ("name", 1, 64)],
                  "dentry": [("d_flags", 1, 0), ("d_name", 3, 128)]})
    monkeypatch.setattr(btf, "FIELDS", (("LEN", "qstr", "len"), ("NAME", "dentry", "d_name.name"),
                                        ("NAME_LEN", "dentry", "d_name.len")))
    assert btf._resolve(data) == ({"LEN": 4, "NAME": 24, "NAME_LEN": 20}, {})
    with_tps = _blob({"qstr": [("len", 1, 32)]}, typedefs=("btf_trace_other", "btf_trace_sys_exit"))
    monkeypatch.setattr(btf, "FIELDS", (("LEN", "qstr", "len"),))
    assert btf._resolve(with_tps) == ({"LEN": 4}, {"sys_exit": 4})   # int 1, qstr 2, the typedefs 3 and 4
    monkeypatch.setattr(btf, "FIELDS", (("LEN", "qstr", "len"), ("NAME", "dentry", "d_name.name"),
                                        ("NAME_LEN", "dentry", "d_name.len")))
    monkeypatch.setattr(btf, "FIELDS", (("X", "dentry", "d_name.nope"),))
    with pytest.raises(btf.BtfError, match="struct dentry has no member d_name.nope"):
        btf._resolve(data)
    vm = tmp_path / "vmlinux"
    vm.write_bytes(data)
    monkeypatch.setattr(btf, "FIELDS", (("X", "task_struct", "files"),))
    with pytest.raises(btf.BtfError, match="struct task_struct is not in the kernel's BTF"):
        btf.offsets(vm, cache=tmp_path / "c")


def test_no_btf_means_none_and_a_broken_one_a_clear_error(tmp_path):
    assert btf.offsets(tmp_path / "missing", cache=tmp_path) is None
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(btf.BtfError, match="not a little-endian BTF blob"):
        btf.offsets(bad, cache=tmp_path / "c")


def test_a_kernel_that_refuses_task_storage_gets_the_hash_for_calls_in_flight():
    """The loader keeps a syscall in flight in task-local storage where the kernel has BTF; a
    kernel that refuses the program with it (task storage for tracepoint programs is 5.11+) gets
    it compiled again with the hash. Another failure is not retried. (BCC stood in for by a module
    whose BPF() refuses what a kernel would: the loader's choice, not the kernel, is under test;
    ``Probe._build`` makes it for each text ``Probe._compile`` tries.)"""
    from osrewind.probes.loader import Probe

    class Refusing:
        def __init__(self, refuse):
            self.refuse, self.calls = refuse, []

        def BPF(self, text, cflags):  # noqa: N802 - BCC's name
            self.calls.append(list(cflags))
            if self.refuse(cflags):
                raise Exception("Failed to load BPF program state_exit: Invalid argument")  # noqa: TRY002
            return "loaded"

    old_kernel = Refusing(lambda flags: "-DPENDING_TASK_STORAGE" in flags)
    assert Probe._build(old_kernel, "the program", ["-DKERNEL_IDENTITY", "-DPENDING_TASK_STORAGE"]) == "loaded"
    assert old_kernel.calls == [["-DKERNEL_IDENTITY", "-DPENDING_TASK_STORAGE"], ["-DKERNEL_IDENTITY"]]

    broken = Refusing(lambda flags: True)
    with pytest.raises(Exception, match="Invalid argument"):
        Probe._build(broken, "the program", ["-DKERNEL_IDENTITY"])
    assert len(broken.calls) == 1


def test_a_program_that_does_not_build_over_the_cached_structs_is_built_as_bcc_makes_it(monkeypatch):
    """The probes are compiled over cached tracepoint structs (probes/tpstructs.py); where that
    fails, the program is compiled once more as BCC makes it by itself (it then reads the format
    files and attaches its own probes). A failure of that one is the recording's error."""
    from osrewind.probes import tpstructs
    from osrewind.probes.loader import Probe

    monkeypatch.setattr(tpstructs, "structs", lambda bcc, tps: "struct osr_tp__sched__sched_switch {\n};\n")

    class Bcc:
        def __init__(self, refuse):
            self.refuse, self.texts = refuse, []

        def BPF(self, text, cflags):  # noqa: N802 - BCC's name
            self.texts.append(text.decode())
            if self.refuse(self.texts[-1]):
                raise Exception("Failed to compile BPF module <text>")  # noqa: TRY002
            return "loaded"

    cached_refused = Bcc(lambda text: "osr_tp__" in text)
    assert Probe._compile(Probe.__new__(Probe), cached_refused, []) == "loaded"
    assert ["osr_tp__" in t for t in cached_refused.texts] == [True, False]
    assert "#define TRACEPOINT_PROBE(category, event) int osr_tp__" in cached_refused.texts[0]

    broken = Bcc(lambda text: True)
    with pytest.raises(Exception, match="Failed to compile"):
        Probe._compile(Probe.__new__(Probe), broken, [])
    assert len(broken.texts) == 2
