"""A run as a Perfetto trace (``osrewind export RUN --format perfetto``), for ui.perfetto.dev.

Built with the ``perfetto`` package's trace protos (``TraceProtoBuilder``):

- per-CPU scheduling lanes: the run's context switches and wakeups as ftrace ``sched_switch`` /
  ``sched_wakeup`` events, one bundle per CPU (what Perfetto draws as CPU tracks);
- a process track per process (pid, name, command line) and a thread track per thread under it;
- syscalls as slices on their thread's track, named by the syscall, with its arguments and result;
- file, process and network facts as instants on their thread's track, named as ``osrewind events``
  says them;
- each fork of a process as a flow from the parent's fork to the child's birth;
- tests (``pytest --osrewind``) as slices on a ``tests`` track, with their outcome.

Timestamps are the recording's CLOCK_MONOTONIC ns, given as Perfetto's default clock.
"""

from __future__ import annotations

from collections.abc import Callable

from osrewind.probes.records import CLONE_THREAD

SEQUENCE = 1
TESTS_TRACK = 1
STREAM = ("syscall", "sched_switch", "sched_wakeup", "sched_migrate", "lost", "syscall_agg")
BUNDLE = 2000   # ftrace events per bundle


def build(rec, progress: Callable[[int], None] | None = None) -> bytes:
    """The trace of the run ``rec`` (a ``queries.api.Recording``), serialised."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder

    from osrewind.queries.events import describe

    builder = TraceProtoBuilder()
    first = [True]

    def event(ts: int, track: int, kind: int, name: str = "") -> pb.TrackEvent:
        p = builder.add_packet()
        p.timestamp = ts
        p.trusted_packet_sequence_id = SEQUENCE
        if first[0]:
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            first[0] = False
        p.track_event.type = kind
        p.track_event.track_uuid = track
        if name:
            p.track_event.name = name
        return p.track_event

    def annotate(te: pb.TrackEvent, **values: object) -> None:
        for k, v in values.items():
            a = te.debug_annotations.add()
            a.name = k
            if isinstance(v, int):
                a.int_value = v
            else:
                a.string_value = str(v)

    procs: dict[int, int] = {}     # pid -> its process track
    threads: dict[int, int] = {}   # tid -> its thread track

    def process_track(pid: int, name: str = "", argv: list[str] | None = None) -> int:
        if pid not in procs:
            procs[pid] = uuid = 2 * pid + (1 << 40)
            p = builder.add_packet()
            p.track_descriptor.uuid = uuid
            p.track_descriptor.process.pid = pid
            if name:
                p.track_descriptor.process.process_name = name
            p.track_descriptor.process.cmdline.extend(argv or [])
        return procs[pid]

    def thread_track(pid: int, tid: int, name: str = "") -> int:
        if tid not in threads:
            parent = process_track(pid)
            threads[tid] = uuid = 2 * tid + 1 + (1 << 40)
            p = builder.add_packet()
            p.track_descriptor.uuid = uuid
            p.track_descriptor.parent_uuid = parent
            p.track_descriptor.thread.pid = pid
            p.track_descriptor.thread.tid = tid
            if name:
                p.track_descriptor.thread.thread_name = name
        return threads[tid]

    def walk(nodes) -> None:
        for n in nodes:
            process_track(n.pid, n.exe.rsplit("/", 1)[-1] if n.exe else "", n.argv)
            walk(n.children)

    walk(rec.tree())

    cpus: dict[int, list] = {}
    n = 0
    for e in rec.events():
        n += 1
        if progress is not None and n % 100_000 == 0:
            progress(n)
        kind, ts = e["kind"], int(e["ts"])
        if kind == "sched_switch":
            cpus.setdefault(int(e["cpu"]), []).append(("switch", e))
            continue
        if kind == "sched_wakeup":
            cpus.setdefault(int(e["cpu"]), []).append(("wakeup", e))
            continue
        if kind in ("sched_migrate", "lost"):
            continue
        track = thread_track(int(e["tgid"]), int(e["tid"]), e["comm"])
        if kind == "syscall":
            te = event(ts, track, pb.TrackEvent.TYPE_SLICE_BEGIN, e.get("syscall") or f"syscall {e['nr']}")
            annotate(te, **{f"arg{i}": int(e[f"a{i}"]) for i in range(6)}, ret=int(e["ret"]))
            event(ts + max(0, int(e["dur"])), track, pb.TrackEvent.TYPE_SLICE_END)
            continue
        te = event(ts, track, pb.TrackEvent.TYPE_INSTANT, describe(e))
        annotate(te, kind=kind, ret=int(e["ret"]))
        if kind == "fork" and not int(e["a2"]) & CLONE_THREAD:   # a new process: a flow to its birth
            child = int(e["a1"])
            te.flow_ids.append(child + (1 << 32))
            born = event(ts + 1, thread_track(child, child, e["comm"]), pb.TrackEvent.TYPE_INSTANT, "born")
            born.terminating_flow_ids.append(child + (1 << 32))

    for cpu, items in sorted(cpus.items()):
        for i in range(0, len(items), BUNDLE):
            p = builder.add_packet()
            bundle = p.ftrace_events
            bundle.cpu = cpu
            for what, e in items[i:i + BUNDLE]:
                fe = bundle.event.add()
                fe.timestamp = int(e["ts"])
                if what == "switch":
                    fe.pid = int(e["a3"])
                    s = fe.sched_switch
                    s.prev_pid, s.prev_comm, s.prev_state = int(e["a3"]), e["comm"], int(e["a0"])
                    s.next_pid, s.next_comm = int(e["a1"]), e["path"]
                    s.prev_prio = s.next_prio = 120
                else:
                    fe.pid = 0
                    w = fe.sched_wakeup
                    w.pid, w.comm, w.target_cpu, w.success, w.prio = int(e["tid"]), e["comm"], int(e["a0"]), 1, 120

    tests = rec.tests()
    if tests:
        p = builder.add_packet()
        p.track_descriptor.uuid = TESTS_TRACK
        p.track_descriptor.name = "tests"
        for t in tests:
            te = event(t.start_ns, TESTS_TRACK, pb.TrackEvent.TYPE_SLICE_BEGIN, t.nodeid)
            annotate(te, outcome=t.outcome, pid=t.pid, **({"message": t.message} if t.message else {}))
            event(t.end_ns, TESTS_TRACK, pb.TrackEvent.TYPE_SLICE_END)
    return builder.serialize()
