"""The tracepoint structs' cache (probes/tpstructs.py), without root: names, what is found in a
program, a cache that is incomplete or cannot be written."""

from __future__ import annotations

from osrewind.probes import tpstructs


def test_probe_function_names_map_to_their_tracepoints():
    assert tpstructs.attach_name("osr_tp__syscalls__sys_enter_openat") == "syscalls:sys_enter_openat"
    assert tpstructs.attach_name("osr_tp__sched__sched_process_exec") == "sched:sched_process_exec"
    assert tpstructs.attach_name("tracepoint__sched__sched_switch") is None
    assert tpstructs.attach_name("osr_tp__sched") is None and tpstructs.attach_name("sc_exit_btf") is None


def test_the_override_declares_probes_over_the_cached_structs():
    text = tpstructs.override("struct osr_tp__a__b {\n\tu64 __do_not_use__;\n};\n")
    assert text.startswith("#undef TRACEPOINT_PROBE\n#define TRACEPOINT_PROBE(category, event) "
                           "int osr_tp__##category##__##event(struct osr_tp__##category##__##event *args)\n")
    assert text.endswith("struct osr_tp__a__b {\n\tu64 __do_not_use__;\n};\n")


def test_only_this_kernels_tracepoints_are_asked_for(tmp_path):
    (tmp_path / "events" / "sched" / "sched_switch").mkdir(parents=True)
    source = ("TRACEPOINT_PROBE(sched, sched_switch) { return 0; }\n"
              "TRACEPOINT_PROBE(sched, sched_switch) { return 1; }\n"      # once, even if twice
              "TRACEPOINT_PROBE(syscalls, sys_enter_gone) { return 0; }\n"   # not on this kernel
              "  // TRACEPOINT_PROBE(x, y) in a comment does not count\n")
    assert tpstructs.tracepoints(source, tmp_path) == [("sched", "sched_switch")]


class _NoBcc:
    """A stand-in for the bcc module whose capture would print these structs."""


def test_an_incomplete_cache_is_made_again_and_an_unwritable_one_is_not_needed(tmp_path, monkeypatch):
    tps = [("sched", "sched_switch"), ("sched", "sched_wakeup")]
    made = "".join(f"struct osr_tp__{c}__{e} {{\n\tu64 __do_not_use__;\n}};\n" for c, e in tps)
    captures = []
    monkeypatch.setattr(tpstructs, "_capture", lambda bcc, asked: captures.append(asked) or made)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert tpstructs.structs(_NoBcc, tps) == made and len(captures) == 1
    assert tpstructs.structs(_NoBcc, tps) == made and len(captures) == 1      # from the cache
    (cached,) = (tmp_path / "cache" / "osrewind").glob("tracepoint-structs-*.h")
    cached.write_text(made.split("struct osr_tp__sched__sched_wakeup")[0])   # one struct lost
    assert tpstructs.structs(_NoBcc, tps) == made and len(captures) == 2
    assert cached.read_text() == made
    assert tpstructs.structs(_NoBcc, tps[:1]) == made and len(captures) == 3  # another list, another key
    (tmp_path / "ro").write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ro"))
    assert tpstructs.structs(_NoBcc, tps) == made and len(captures) == 4     # still right, not cached
    assert tpstructs.structs(_NoBcc, []) is None
