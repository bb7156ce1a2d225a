"""What the every-syscall hooks' BPF helper calls cost here, in ns per call (issue 10, point 1).

The recorder's raw `sys_enter` / `sys_exit` programs (probes/record.bpf.c) are a few loads and
stores plus helper calls; on this kernel the calls are what costs (each is a real call, and the
clock read makes an indirect one inside). This bench measures them one at a time, the way the
recorder pays them: a pair of raw tracepoint programs on `sys_enter` and `sys_exit` that make only
that call (--calls times in each program), under `dd if=/dev/zero of=/dev/null bs=1 count=N`
(two syscalls per byte, each running both programs), against the same pair of EMPTY programs (the
hook floor) measured in the same rounds:

    ns per call = (median dd time with the call - median dd time, empty) / (2 N x 2 programs x calls)

Variants (interleaved: every round measures each once, in an order rotated per round):
- empty: the floor;
- get_pid_tgid: bpf_get_current_pid_tgid();
- ktime: bpf_ktime_get_ns() (the clock of every record's time and duration);
- ringbuf: one bpf_ringbuf_reserve + fill + bpf_ringbuf_submit(BPF_RB_NO_WAKEUP) of a record of
  --record-bytes (default: the syscall lane's `struct sc_call`) per program, in a ring large
  enough that nothing is dropped (nothing drains it; --calls does not apply);
- ringbuf_output: the same record filled on the stack and copied by one bpf_ringbuf_output.

Usage (root; the venv's python, which reaches BCC):
    sudo .venv/bin/python bench/helper_costs.py                    # 5 rounds, count 1000000
    sudo .venv/bin/python bench/helper_costs.py --rounds 8 --json
Numbers depend on the machine and its load: compare with the floor of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from benchlib import fmt, progress, progress_end, run_dd, summarize

from osrewind.probes import records

PROGRAM = r"""
BPF_RINGBUF_OUTPUT(rb, RING_PAGES);
BPF_PERCPU_ARRAY(sink, u64, 2);   // [0]: the calls' results (so none is optimised away); [1]: reserve failures
static __always_inline int body(void) {
    u64 v = 0;
    u32 zero = 0, one = 1;
    BODY
    u64 *s = sink.lookup(&zero);
    if (s)
        *s += v;
    return 0;
}
RAW_TRACEPOINT_PROBE(sys_enter) { return body(); }
RAW_TRACEPOINT_PROBE(sys_exit) { return body(); }
"""

RINGBUF_BODY = r"""
    u64 *r = rb.ringbuf_reserve(RECORD_BYTES);
    if (r) {
        #pragma unroll
        for (int i = 0; i < RECORD_BYTES / 8; i++)
            r[i] = i;
        rb.ringbuf_submit(r, BPF_RB_NO_WAKEUP);
    } else {
        u64 *f = sink.lookup(&one);
        if (f)
            *f += 1;
    }
"""

OUTPUT_BODY = r"""
    struct { u64 w[RECORD_BYTES / 8]; } rec;
    #pragma unroll
    for (int i = 0; i < RECORD_BYTES / 8; i++)
        rec.w[i] = i;
    if (rb.ringbuf_output(&rec, sizeof(rec), BPF_RB_NO_WAKEUP)) {
        u64 *f = sink.lookup(&one);
        if (f)
            *f += 1;
    }
"""

VARIANTS = ("empty", "get_pid_tgid", "ktime", "ringbuf", "ringbuf_output")
RING_VARIANTS = ("ringbuf", "ringbuf_output")


def body_of(variant: str, calls: int) -> str:
    if variant == "empty":
        return ""
    if variant == "ringbuf":
        return RINGBUF_BODY
    if variant == "ringbuf_output":
        return OUTPUT_BODY
    helper = {"get_pid_tgid": "bpf_get_current_pid_tgid()", "ktime": "bpf_ktime_get_ns()"}[variant]
    return "\n".join(f"    v += {helper};" for _ in range(calls))


def measure(variant: str, count: int, calls: int, record_bytes: int) -> float:
    import bcc  # noqa: PLC0415 - only measuring needs BCC (root)

    # every program of a dd run reserves one record: 2 per syscall, 4 per byte, with the ring's headers
    ring_bytes = 4 * count * (record_bytes + 8) if variant in RING_VARIANTS else 4096
    pages = 1
    while pages * 4096 < ring_bytes:
        pages *= 2
    text = PROGRAM.replace("BODY", body_of(variant, calls))
    b = bcc.BPF(text=text, cflags=[f"-DRING_PAGES={pages}", f"-DRECORD_BYTES={record_bytes}"])
    try:
        t = run_dd(count)
        failed = sum(b[b"sink"][1]) if variant in RING_VARIANTS else 0
    finally:
        b.cleanup()
    if failed:
        raise SystemExit(f"helper_costs: {failed} ring reservations failed; use a smaller --count")
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--count", type=int, default=1_000_000, help="dd count (bytes; 2 syscalls each; default 1000000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--calls", type=int, default=4, help="calls of the helper per program (default 4)")
    ap.add_argument("--record-bytes", type=int, default=records.DTYPES["sc_call"].itemsize,
                    help="ringbuf: record size (default: struct sc_call, %(default)s)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    a = ap.parse_args()
    if a.count <= 0 or a.rounds <= 0 or a.calls <= 0 or a.record_bytes <= 0 or a.record_bytes % 8:
        ap.error("--count, --rounds, --calls must be positive; --record-bytes a positive multiple of 8")
    times: dict[str, list[float]] = {v: [] for v in ("untraced", *VARIANTS)}
    started = time.monotonic()
    for r in range(a.rounds):
        times["untraced"].append(run_dd(a.count))
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for v in order:
            progress(f"round {r + 1}/{a.rounds}: {v}")
            times[v].append(measure(v, a.count, a.calls, a.record_bytes))
    progress_end()
    summary = {v: summarize(ts) for v, ts in times.items()}
    floor = summary["empty"]["median"]
    per_call = {}
    for v in VARIANTS[1:]:
        n_calls = 2 * a.count * 2 * (1 if v in RING_VARIANTS else a.calls)
        per_call[v] = (summary[v]["median"] - floor) / n_calls * 1e9
    report = {"count": a.count, "rounds": a.rounds, "calls": a.calls, "record_bytes": a.record_bytes,
              "seconds": time.monotonic() - started, "dd_s": summary, "ns_per_call": per_call,
              "load1": os.getloadavg()[0]}
    if a.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"dd bs=1 count={a.count}, {a.rounds} rounds interleaved (min/median s); "
          f"helpers {a.calls}x per program, ring records of {a.record_bytes} bytes")
    for v in ("untraced", *VARIANTS):
        s = summary[v]
        cost = "" if v not in per_call else f"   {fmt(per_call[v], '.1f')} ns per call over empty"
        print(f"  {v:15s} {fmt(s['min'], '.3f')}/{fmt(s['median'], '.3f')}"
              f"  (x{fmt(s['median'] / floor, '.2f')} the floor){cost}")
    spread = statistics.median(times["empty"]) - min(times["empty"])
    print(f"  noise: the floor's median is {fmt(spread, '.3f')} s above its min "
          f"({fmt(spread / (2 * a.count) * 1e9, '.1f')} ns per syscall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
