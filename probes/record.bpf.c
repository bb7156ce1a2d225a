// osrewind recorder: process lifecycle and fd/file syscalls of the scoped processes.
//
// Compiled by BCC at record time (probes/loader.py). Tracepoints only: this kernel has no kprobes or
// fentry, and the kernel headers BCC compiles against may be older than the running kernel, so this
// program reads tracepoint arguments (their layout comes from tracefs at run time), BPF helpers,
// syscall pointer arguments from user memory, the syscall registers (struct pt_regs: the
// architecture's ABI), and kernel struct fields only at offsets taken from the running kernel's BTF
// (KERNEL_IDENTITY, OFF_*), never through the headers' structs.
//
// Three lanes, each in rings of its own, so a flood in one never costs another its records:
//   - the state lane: process lifecycle and fd/file/socket facts. A fact with a string (path, argv,
//     socket address, name) is a `struct event` in `events`; one without is the same record minus the
//     string, a `struct fact` in `rb_facts` (112 bytes instead of 624: close, fork, exit, dup, ...),
//     and one whose only string is a short path a `struct event_short` in `rb_short` (240 bytes);
//   - the syscall lane (`rb_sc`): every syscall of the scoped processes as one `struct sc_call`,
//     written when it returns (entry time, duration, ids, number, the argument registers, result;
//     the task name only when it is new); when the ring is full it degrades to in-kernel counts
//     per (thread, syscall) instead of dropping (see "degraded syscalls");
//   - the scheduler lane (`rb_sched`): one compact `struct sched_rec` per switch/wakeup/migration.
// Every record of a ring has the same size, so user space decodes a whole drain with one numpy view:
// records are sized per class of fact (a ring each), not one by one.
// The record structs and the K_* / DROP_* codes are generated from probes/records.py and prepended
// by the loader (a kernel test compares the compiled layouts with the decoder's). Records are
// submitted with BPF_RB_NO_WAKEUP: the reader polls on a short timer.
//
// Scope: `tracked` is an array indexed by tgid (sized to pid_max), read first in every program, before
// any other work: a process out of scope pays one array load per hook; in the raw syscall hooks,
// which every syscall on the machine runs, a few loads of per-CPU memos (`out_memo`, `in_memo`).
// Every drop is counted at its cause in the per-CPU `drops` array (full rings per lane, full maps),
// and stored with the run.
//
// Options come in as -D cflags from the loader:
//   SYSTEM_WIDE     record every process (minus SELF_TGID, the recorder itself)
//   SELF_TGID=n     the recorder's own tgid
//   CGROUP_SCOPE    record --cgroup: a task moved into that cgroup (cg_scope) comes into scope
//   PID_MAX=n       entries of the arrays indexed by pid (the kernel's pid_max)
//   RINGBUF_PAGES=n, FACTS_PAGES, SHORT_PAGES, SC_PAGES, SCHED_PAGES   ring sizes in pages
//                   (powers of two)
//   HAVE_<name>     the tracepoint syscalls:sys_enter_<name> exists on this kernel/arch
//   REGS_WINDOW=expr   where the syscall argument registers start in struct pt_regs
//   NO_SYSCALLS     leave out the generic every-syscall stream (no raw syscall hook is attached)
//   NO_SCHED        leave out the scheduler (no sched_switch/wakeup/migrate hook is attached)
//   AGGREGATE_IO    sum successful read/write-family syscalls per (process, fd) instead of a record each
//   REGS_ARG0_AT_EXIT=expr   where the first argument is at sys_exit, if not in the window (aarch64)
//   NR_EXIT, NR_EXIT_GROUP   the numbers of exit and exit_group (they never reach sys_exit)
//   NR_EXECVE, NR_EXECVEAT   the numbers of execve and execveat (their registers are replaced)

#include <uapi/linux/ptrace.h>

// Kept short to compile (BCC compiles this program at every recording): the tracepoints' argument
// structs that BCC generates name sigset_t only through pointers, so its declaration here stands in
// for <linux/signal.h> (0.2 s of parsing); and user memory is read through helpers named here,
// because a call to bpf_probe_read_user{,_str} makes BCC load every kernel symbol
// (/proc/kallsyms) to check that the kernel has it (0.5-0.8 s; it has since 5.5).
typedef struct { unsigned long sig[1]; } sigset_t;
static long (*read_user)(void *dst, u32 size, const void *src) = (void *)BPF_FUNC_probe_read_user;
static long (*read_user_str)(void *dst, u32 size, const void *src) = (void *)BPF_FUNC_probe_read_user_str;

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 4096
#endif
#ifndef SELF_TGID
#define SELF_TGID 0
#endif
#ifndef PID_MAX
#define PID_MAX 32768
#endif
#ifndef FACTS_PAGES
#define FACTS_PAGES RINGBUF_PAGES
#endif
#ifndef SHORT_PAGES
#define SHORT_PAGES RINGBUF_PAGES
#endif
#ifndef SC_PAGES
#define SC_PAGES RINGBUF_PAGES
#endif
#ifndef SCHED_PAGES
#define SCHED_PAGES RINGBUF_PAGES
#endif
#ifndef BPF_F_MMAPABLE
#define BPF_F_MMAPABLE (1U << 10)
#endif

#define SOCKADDR_MAX 127  // sockaddr_un is 110 bytes, sockaddr_in6 28
#define ARGV_MAX 20
#define CLONE_THREAD_FLAG 0x00010000ULL

// Record kinds (K_* constants and struct layouts are generated from probes/records.py and
// prepended by the loader). What each state-lane kind carries in struct event (a record with no str to
// carry goes out as a struct fact, the same fields without str, in its own ring):
//   K_FORK: a0 parent tid, a1 child pid, a2 clone flags (-1 unknown); with KERNEL_IDENTITY, for a
//       process: a4 its exact start (CLOCK_MONOTONIC ns), a5 its real parent's tgid
//   K_EXEC: a0 old pid (tid that called exec); str filename; with KERNEL_IDENTITY a4, a5 as K_FORK
//       and the second string: the program's path as the kernel holds it (/proc/PID/exe)
//   K_EXEC_ARGS: a0 argc captured, a1 1 if argv was truncated; str NUL-separated argv
//   K_EXEC_FAIL: ret errno; str filename
//   K_EXIT_CALL: a0 exit code, a1 1 for exit_group, 0 for exit
//   K_TASK_EXIT: a0 group_dead; tid = exiting task
//   K_WAIT: ret reaped pid, a0 wait status (-1 if unreadable)
//   K_LOST: (user space only) a gap: a0 records lost
//   K_OPEN: a0 dfd, a2 flags, a3 mode; str path; ret fd
//   K_CLOSE: a0 fd
//   K_CLOSE_RANGE: a0 first, a1 last, a2 flags
//   K_DUP: a0 oldfd, a1 newfd (dup2/dup3/fcntl; -1 for dup), a2 flags (O_CLOEXEC); ret newfd
//   K_SETFD: fcntl(F_SETFD) or ioctl(FIOCLEX/FIONCLEX): a0 fd, a2 fd flags (FD_CLOEXEC)
//   K_PIPE: a0 read fd, a1 write fd, a2 flags
//   K_CHDIR: str path
//   K_FCHDIR: a0 fd
//   K_RENAME: a0 olddfd, a1 newdfd, a2 flags, a3 its place in the order renames entered (1, 2, ...:
//             `rename_seq`), a4 how many renames had entered when it returned; str old (first
//             half), new (second half). A rename entered after another returned took effect after it;
//             the order of two that overlap is the order they took effect, which the rewind engine
//             works out (queries/engine/files.py)
//   K_UNLINK: a0 dfd, a2 flags (AT_REMOVEDIR for rmdir); str path
//   K_MKDIR: a0 dfd, a3 mode; str path
//   K_SOCKET: a0 family, a1 type (with SOCK_CLOEXEC), a2 protocol; ret fd
//   K_SOCKETPAIR: a0 fd0, a1 fd1, a2 type, a3 family
//   K_ACCEPT: a0 listening fd, a2 flags; ret fd
//   K_ANONFD: a1 subtype (see ANON_*), a2 flags; str name (memfd); ret fd
//   K_BIND: a0 fd, a1 addrlen; str the sockaddr as passed (len1 bytes)
//   K_CONNECT: a0 fd, a1 addrlen; str the sockaddr
//   K_LISTEN: a0 fd, a1 backlog
//   K_SHUTDOWN: a0 fd, a1 how
//   K_IO: (user space, --aggregate-io) bytes moved on an fd since the last flush:
//       a0 fd, a1 bytes written/sent, a2 bytes read/received, a3 calls
//   K_SOCKNAME: getsockname: a0 fd; str the local sockaddr the kernel returned
//   K_SOCK_STATE: TCP state change: a0 old, a1 new, a2 sport, a3 dport, a4 family, a5 sock address;
//       str: source address (16 bytes), destination address (16 bytes)
//   K_SIGNAL_GENERATE: sender's context: a0 sig, a1 target pid, a2 si_code, a3 group; ret result;
//       str target comm
//   K_SIGNAL_DELIVER: receiver's context: a0 sig, a2 si_code, a3 handler (0 default, 1 ignore)
//   K_OOM_VICTIM: a0 victim pid, a1 uid, a2 total_vm pages, a3 oom_score_adj; str comm
//   K_IDENTITY: a process of the /proc baseline as the kernel keeps it (the recorder asks through a
//       pidfd): tgid = that process, a0 exact start (CLOCK_MONOTONIC ns), a1 real parent's tgid
//   K_CGROUP: a task moved to another cgroup: tid = the task, tgid its process, comm its name; a0
//       hierarchy id (0: cgroup v2), a1 level, a2 cgroup id; str the cgroup's path in that hierarchy
//   K_SYSCALL: every syscall: nr, a0..a5 args, ret, dur; ts is the entry time
//   K_SYSCALL_AGG: (user space, from the sc_agg map) syscalls of one thread and number counted while
//       the syscall lane was degraded: ts first entry, dur summed, a0 count, a1 failed, a2 last exit
//   K_SCHED_SWITCH: on cpu: tgid/tid prev (0 if untracked), a0 prev_state, a1 next tid,
//       a2 next tgid (-1 untracked), a3 prev tid; dur next's run-queue wait;
//       comm prev comm, str next comm
//   K_SCHED_WAKEUP: tid woken: a0 target cpu, a1 1 for a new task
//   K_SCHED_MIGRATE: tid moved: a0 from cpu, a1 to cpu

enum anon { ANON_EVENTFD = 1, ANON_EPOLL = 2, ANON_MEMFD = 3, ANON_TIMERFD = 4, ANON_SIGNALFD = 5,
            ANON_INOTIFY = 6, ANON_PIDFD = 7 };

// struct event, struct sc_call, struct sched_rec: see probes/records.py (LAYOUTS).

// Syscall arguments saved at sys_enter, completed at sys_exit (keyed by pid_tgid).
struct inflight {
    u64 a[4];
    u64 p1;         // user pointer: path / argv / fildes
    u64 p2;         // user pointer: second path
    u16 kind;
    u16 sub;
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_RINGBUF_OUTPUT(rb_facts, FACTS_PAGES);
BPF_RINGBUF_OUTPUT(rb_short, SHORT_PAGES);
#ifndef NO_SYSCALLS
BPF_RINGBUF_OUTPUT(rb_sc, SC_PAGES);
#endif
#ifndef NO_SCHED
BPF_RINGBUF_OUTPUT(rb_sched, SCHED_PAGES);
#endif
BPF_PERCPU_ARRAY(drops, u64, N_DROPS);    // records dropped, per cause (DROP_*)
// scope: tgid -> 1 when recorded; tid -> its tgid (for scheduler events about other tasks).
// Arrays, not hashes: a load instead of a hash lookup, and they cannot fill. User space maps them.
BPF_F_TABLE("array", u32, u32, tracked, PID_MAX, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, u32, tids, PID_MAX, BPF_F_MMAPABLE);
BPF_HASH(cloneflags, u32, u64, 16384);
BPF_HASH(woken, u32, u64, 65536);         // tid -> when it was woken (run-queue latency)
BPF_HASH(tports, u16, u8, 4096);          // local TCP ports of tracked sockets (host order)
BPF_ARRAY(rename_seq, u64, 1);            // [0]: renames entered so far (in scope)

static __always_inline void dropped(u32 cause) {
    u64 *n = drops.lookup(&cause);
    if (n)
        (*n)++;
}

// `pending`: each thread's syscall in flight, from its enter to its exit. With PENDING_TASK_STORAGE
// (the loader sets it where the kernel has BTF) it is task-local storage: a slot that lives with the
// task, found from the task itself (a helper call of a few ns, no hashing, nothing to delete; a hash
// update at enter and a lookup and delete at exit cost about 300 ns a call here). Otherwise a hash
// keyed by pid_tgid. pend_put / pend_get / pend_done hide which.
#ifdef PENDING_TASK_STORAGE
BPF_TASK_STORAGE(pending, struct inflight);
static __always_inline void pend_put(u64 id, struct inflight *f) {
    struct inflight *slot = pending.task_storage_get(bpf_get_current_task_btf(), 0,
                                                     BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!slot) {
        dropped(DROP_MAP_PENDING);
        return;
    }
    __builtin_memcpy(slot, f, sizeof(*f));
}
static __always_inline struct inflight *pend_get(u64 id) {
    struct inflight *slot = pending.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    return slot && slot->kind ? slot : 0;
}
static __always_inline void pend_done(u64 id, struct inflight *f) {
    if (f)
        f->kind = 0;   // no call in flight (kinds start at 1)
}
static __always_inline void pend_forget(u64 id) {}  // the slot goes with the task
#else
BPF_HASH(pending, u64, struct inflight, 16384);
static __always_inline void pend_put(u64 id, struct inflight *f) {
    if (pending.update(&id, f))
        dropped(DROP_MAP_PENDING);
}
static __always_inline struct inflight *pend_get(u64 id) { return pending.lookup(&id); }
static __always_inline void pend_done(u64 id, struct inflight *f) { pending.delete(&id); }
static __always_inline void pend_forget(u64 id) { pending.delete(&id); }
#endif

// renames entered so far (in scope)
static __always_inline u64 renames_entered(void) {
    u32 zero = 0;
    u64 *n = rename_seq.lookup(&zero);
    return n ? *n : 0;
}

// --aggregate-io: byte counts of read/write/send/recv-family syscalls summed per (process, fd)
// instead of one record per call. A sum is sent as one `io` record when it is 100 ms old or 64
// calls big (checked at the next call), when the fd is closed, or, for an fd gone quiet, by user
// space, which sends and deletes entries older than that.
#define IO_FLUSH_NS 100000000ULL
#define IO_FLUSH_CALLS 64
struct io_key {
    u32 tgid;
    s32 fd;
};
struct io_total {
    u64 out;
    u64 in;
    u64 calls;
    u64 first;      // when the oldest unsent call happened
};
BPF_HASH(io, struct io_key, struct io_total, 65536);
BPF_ARRAY(ionr, u8, 1024);                // syscall nr -> 1 sends bytes, 2 receives bytes
#ifndef NO_SYSCALLS
// Degraded syscalls. When the syscall ring is full (a record's reserve fails), the call is added to
// `sc_agg` (epoch, tgid, tid, nr) -> count, failures, time spent, first entry, last exit, instead
// of being written. User space takes the aggregates out by epoch: it flips `sc_ctl[0]` and reads
// and deletes the previous epoch's entries one sweep later, when no program can still be adding
// to them.
#ifndef NR_EXIT
#define NR_EXIT 0xffffffff
#endif
#ifndef NR_EXIT_GROUP
#define NR_EXIT_GROUP 0xffffffff
#endif
#ifndef NR_EXECVE
#define NR_EXECVE 0xffffffff
#endif
#ifndef NR_EXECVEAT
#define NR_EXECVEAT 0xffffffff
#endif
struct sc_slot {
    u64 ts;     // entry time of the syscall the thread is in, 0: none (or not seen entering)
    u32 nr;
    u32 cpu;
};
struct sc_exec_args {
    u64 regs[8];
};
BPF_F_TABLE("array", u32, u32, sc_comm, PID_MAX, 0);  // tid -> 1 once its task name went out in a record
BPF_F_TABLE("array", u32, struct sc_slot, sc_slot, PID_MAX, 0);   // tid -> the syscall it is in
BPF_HASH(sc_exec, u32, struct sc_exec_args, 1024);      // tid -> the registers its execve entered with
BPF_ARRAY(sc_ctl, u32, 1);                            // [0]: the aggregates' current epoch
BPF_HASH(sc_agg, struct sc_agg_key, struct sc_agg, 65536);
// syscall nr -> 1 when its calls complete a state-lane fact (the EXIT / EXIT_KPATH lines below):
// with the every-syscall stream on, the raw sys_exit hook completes them, so the loader attaches
// no syscalls:sys_exit_<name> tracepoint for them (the kernel releases each classic tracepoint
// through a grace period, one at a time: 44 fewer make detaching, and a recording started meanwhile,
// about half as long)
BPF_ARRAY(state_nr, u8, 1024);
#endif
// Never written by the kernel: their value types let user space check the record layouts.
BPF_ARRAY(layout_sc_agg_key, struct sc_agg_key, 1);
BPF_ARRAY(layout_sc_agg, struct sc_agg, 1);
BPF_ARRAY(layout_event, struct event, 1);
BPF_ARRAY(layout_fact, struct fact, 1);
BPF_ARRAY(layout_event_short, struct event_short, 1);
BPF_ARRAY(layout_sc_call, struct sc_call, 1);
BPF_ARRAY(layout_sched_rec, struct sched_rec, 1);

#ifndef SYSTEM_WIDE
// The raw syscall hooks' scope memos, so a task pays a few loads per hook for its scope test
// instead of helper calls (on this kernel bpf_get_current_pid_tgid is a call, not inlined). Each
// CPU keeps the pt_regs address of the last task it found out of scope (`out_memo`) and of the last
// it found in scope with that task's pid_tgid (`in_memo`), each with the scope's generation at the
// time (that address is the top of the task's own kernel stack: no two live tasks share it). The
// generation goes up after every change that could make a memo wrong: [0] by the kernel (a process
// or thread forked in scope, a process moved into the recorded cgroup, a task in scope that exits:
// its stack goes to the next task made on that CPU; a thread other than the leader that execs: it
// takes the leader's pid, and the leader may have exited long before), [1] by user space (pids put
// in scope or taken out of it). So a new task that reuses a dead one's stack finds every memo of
// that stack stale if the dead one was in scope, and is born into a grown scope, or out of it, if
// it was not: a memo never answers for another task. The generation is read before the scope is: a
// change after that read leaves the memo stale. The syscall tracepoints run their programs with
// preemption off (include/trace/bpf_probe.h), so a CPU's memo is written whole before another
// program on that CPU reads it; all the same it is written with the task's address cleared first
// and set last, and read as task, generation, task again, so that a memo half written, or another
// task's write between the reads, matches no task.
struct scope_gen_t {
    u64 kernel;
    u64 user;
};
BPF_F_TABLE("array", u32, struct scope_gen_t, scope_gen, 1, BPF_F_MMAPABLE);
struct out_memo_t {
    u64 regs;
    u64 gen;
};
BPF_PERCPU_ARRAY(out_memo, struct out_memo_t, 1);
struct in_memo_t {
    u64 regs;
    u64 gen;
    u64 id;  // the task's pid_tgid
};
BPF_PERCPU_ARRAY(in_memo, struct in_memo_t, 1);

static __always_inline void scope_changed(void) {
    u32 zero = 0;
    struct scope_gen_t *g = scope_gen.lookup(&zero);
    if (g)
        __sync_fetch_and_add(&g->kernel, 1);
}
#endif

static __always_inline int is_tracked_tgid(u32 tgid) {
#ifdef SYSTEM_WIDE
    return tgid != SELF_TGID;
#else
    u32 *t = tracked.lookup(&tgid);
    return t && *t;
#endif
}

static __always_inline int is_tracked(void) {
    return is_tracked_tgid(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline void set_tracked(u32 tgid, u32 on) {
#ifndef SYSTEM_WIDE
    if (tracked.update(&tgid, &on))
        dropped(DROP_SCOPE_RANGE);
    else if (on)
        scope_changed();
#endif
}

// The raw syscall hooks' scope test: 1 and the current pid_tgid in *id when the task is in scope.
// The CPU's memos answer (see in_memo, out_memo), or are set.
static __always_inline int sc_in_scope(void *regs, u64 *id) {
#ifdef SYSTEM_WIDE
    *id = bpf_get_current_pid_tgid();
    return is_tracked_tgid(*id >> 32);
#else
    u32 zero = 0;
    struct in_memo_t *in = in_memo.lookup(&zero);
    struct out_memo_t *m = out_memo.lookup(&zero);
    struct scope_gen_t *g = scope_gen.lookup(&zero);
    if (!in || !m || !g)
        return 0;
    u64 gen = *(volatile u64 *)&g->kernel + *(volatile u64 *)&g->user;
    u64 was = *(volatile u64 *)&in->regs;
    if (was == (u64)regs && *(volatile u64 *)&in->gen == gen) {
        u64 memo_id = *(volatile u64 *)&in->id;
        if (*(volatile u64 *)&in->regs == was) {
            *id = memo_id;
            return 1;
        }
    }
    was = *(volatile u64 *)&m->regs;
    if (was == (u64)regs && *(volatile u64 *)&m->gen == gen && *(volatile u64 *)&m->regs == was)
        return 0;
    *id = bpf_get_current_pid_tgid();
    if (is_tracked_tgid(*id >> 32)) {  // the task's address last: a memo half written matches no task
        *(volatile u64 *)&in->regs = 0;
        *(volatile u64 *)&in->gen = gen;
        *(volatile u64 *)&in->id = *id;
        *(volatile u64 *)&in->regs = (u64)regs;
        return 1;
    }
    *(volatile u64 *)&m->regs = 0;
    *(volatile u64 *)&m->gen = gen;
    *(volatile u64 *)&m->regs = (u64)regs;
    return 0;
#endif
}

// The fields a state-lane or scheduler-lane record starts with: when, who, what, where (both
// structs have them; the rest of each is zeroed by its own constructor).
#define FILL_HEAD(e, kind_)                          \
    do {                                             \
        u64 id_ = bpf_get_current_pid_tgid();        \
        (e)->ts = bpf_ktime_get_ns();                \
        (e)->tgid = id_ >> 32;                       \
        (e)->tid = (u32)id_;                         \
        (e)->kind = (kind_);                         \
        (e)->len1 = 0;                               \
        (e)->cpu = bpf_get_smp_processor_id();       \
    } while (0)

// The rest of a state-lane record's fixed fields (struct event and struct fact share them).
#define FILL_STATE(e)                                      \
    do {                                                   \
        (e)->ret = 0;                                      \
        (e)->a0 = 0;                                       \
        (e)->a1 = 0;                                       \
        (e)->a2 = 0;                                       \
        (e)->a3 = 0;                                       \
        (e)->a4 = 0;                                       \
        (e)->a5 = 0;                                       \
        (e)->dur = 0;                                      \
        (e)->len2 = 0;                                     \
        (e)->nr = 0;                                       \
        (e)->flags = 0;                                    \
        bpf_get_current_comm(&(e)->comm, sizeof((e)->comm)); \
    } while (0)

// A state fact that carries a string (its str is filled by the caller).
static __always_inline struct event *new_event(u16 kind) {
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        dropped(DROP_RING_EVENTS);
        return NULL;
    }
    FILL_HEAD(e, kind);
    FILL_STATE(e);
    return e;
}

static __always_inline void send(struct event *e) {
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

// A state fact without a string: the compact ring.
static __always_inline struct fact *new_fact(u16 kind) {
    struct fact *e = rb_facts.ringbuf_reserve(sizeof(struct fact));
    if (!e) {
        dropped(DROP_RING_FACTS);
        return NULL;
    }
    FILL_HEAD(e, kind);
    FILL_STATE(e);
    return e;
}

static __always_inline void send_fact(struct fact *e) {
    rb_facts.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline u16 str_len(long n) {
    // bpf_probe_read_*_str returns the bytes copied including the NUL, or a negative error.
    return n > 0 ? (u16)(n - 1) : 0;
}

// ---------------------------------------------------------------- what the kernel opened (BTF)
// With KERNEL_IDENTITY (the loader found the running kernel's BTF: probes/btf.py), an fd-creating
// fact carries what the kernel opened, not only the string the program passed: the file's inode and
// device, and its path as the kernel resolved it (a dentry walk up to the global root, crossing
// mounts, as d_path does: what readlink /proc/PID/fd/N shows). Every struct is read at the offsets
// the kernel's own BTF gives (OFF_*), never through the compile-time headers.
//   K_OPEN:        a4 inode, a5 device (the kernel's dev_t); second string: the resolved path
//   K_CHDIR/FCHDIR: second string: the new cwd as the kernel holds it
//   K_PIPE:        a4 the pipe's inode (both ends share it)
//   K_SOCKET/ACCEPT: a4 the socket's inode; K_SOCKETPAIR: a4, a5 the two sockets' inodes
#ifdef KERNEL_IDENTITY
#define KPATH_SLOTS 40     // path components plus mount points crossed; a deeper path goes without
#define RD(dst, base, off) bpf_probe_read_kernel(&(dst), sizeof(dst), (void *)(base) + (off))

// Several fields of one struct in one probe read (each probe read is a helper call of about 40 ns
// here; a path walk made some 30 of them). The window starts at the lowest field's offset and
// spans at most WIN_BYTES: a field outside it (a kernel whose layout spreads them) is read on its
// own. The offsets are constants (from BTF), so the choice is made at compile time.
#define WIN_BYTES 48
#define MIN2(a, b) ((a) < (b) ? (a) : (b))
#define MAX2(a, b) ((a) > (b) ? (a) : (b))
#define WIN_READ(win, base, lo, hi) bpf_probe_read_kernel((win), MIN2((hi) - (lo), WIN_BYTES), (void *)(base) + (lo))
#define WIN_GET(dst, win, lo, base, off)                                            \
    do {                                                                            \
        if ((off) >= (lo) && (off) - (lo) + sizeof(dst) <= WIN_BYTES)               \
            __builtin_memcpy(&(dst), (char *)(win) + (off) - (lo), sizeof(dst));    \
        else                                                                        \
            RD(dst, base, off);                                                     \
    } while (0)

// struct dentry: d_hash.pprev, d_parent, d_name.len, d_name.name
#define DENT_LO MIN2(MIN2(OFF_DENTRY_HASH_PPREV, OFF_DENTRY_PARENT), MIN2(OFF_DENTRY_NAME_LEN, OFF_DENTRY_NAME))
#define DENT_HI MAX2(MAX2(OFF_DENTRY_HASH_PPREV + 8, OFF_DENTRY_PARENT + 8), \
                     MAX2(OFF_DENTRY_NAME_LEN + 4, OFF_DENTRY_NAME + 8))
struct dent {
    void *pprev, *parent;
    u64 name;
    u32 len;
};
static __always_inline void dent_read(struct dent *d, void *dentry) {
    u64 win[WIN_BYTES / 8];
    WIN_READ(win, dentry, DENT_LO, DENT_HI);
    WIN_GET(d->pprev, win, DENT_LO, dentry, OFF_DENTRY_HASH_PPREV);
    WIN_GET(d->parent, win, DENT_LO, dentry, OFF_DENTRY_PARENT);
    WIN_GET(d->name, win, DENT_LO, dentry, OFF_DENTRY_NAME);
    WIN_GET(d->len, win, DENT_LO, dentry, OFF_DENTRY_NAME_LEN);
}

// struct mount: mnt_parent, mnt_mountpoint, and mnt.mnt_root (struct vfsmount embedded at MOUNT_MNT)
#define MNT_ROOT (OFF_MOUNT_MNT + OFF_VFSMOUNT_ROOT)
#define MNT_LO MIN2(MIN2(OFF_MOUNT_PARENT, OFF_MOUNT_MOUNTPOINT), MNT_ROOT)
#define MNT_HI (MAX2(MAX2(OFF_MOUNT_PARENT, OFF_MOUNT_MOUNTPOINT), MNT_ROOT) + 8)
struct mnt {
    void *parent, *mountpoint, *root;
};
static __always_inline void mnt_read(struct mnt *m, void *mount) {
    u64 win[WIN_BYTES / 8];
    WIN_READ(win, mount, MNT_LO, MNT_HI);
    WIN_GET(m->parent, win, MNT_LO, mount, OFF_MOUNT_PARENT);
    WIN_GET(m->mountpoint, win, MNT_LO, mount, OFF_MOUNT_MOUNTPOINT);
    WIN_GET(m->root, win, MNT_LO, mount, MNT_ROOT);
}

struct kpath_scratch {
    char buf[512];          // the path being assembled (at most STR_HALF - 1 bytes; slack for the verifier)
};
BPF_PERCPU_ARRAY(kpath_scratch, struct kpath_scratch, 1);

// The struct file behind the current task's fd `fd`, or 0.
#define FDT_LO MIN2(OFF_FDT_MAX_FDS, OFF_FDT_FD)
#define FDT_HI MAX2(OFF_FDT_MAX_FDS + 4, OFF_FDT_FD + 8)
static __always_inline void *fd_file(long fd) {
    void *task = (void *)bpf_get_current_task();
    void *files = 0, *fdt = 0, *fds = 0, *file = 0;
    u32 max = 0;
    u64 win[WIN_BYTES / 8];
    RD(files, task, OFF_TASK_FILES);
    if (!files)
        return 0;
    RD(fdt, files, OFF_FILES_FDT);
    if (!fdt)
        return 0;
    WIN_READ(win, fdt, FDT_LO, FDT_HI);
    WIN_GET(max, win, FDT_LO, fdt, OFF_FDT_MAX_FDS);
    if (fd < 0 || fd >= max)
        return 0;
    WIN_GET(fds, win, FDT_LO, fdt, OFF_FDT_FD);
    if (!fds)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), fds + fd * sizeof(void *));
    return file;
}

static __always_inline u64 file_ino(void *file) {
    void *inode = 0;
    u64 ino = 0;
    if (!file)
        return 0;
    RD(inode, file, OFF_FILE_INODE);
    if (inode)
        RD(ino, inode, OFF_INODE_INO);
    return ino;
}

// The path of (vfsmnt, dentry) into s->buf, its components leaf first ("f/dir/tmp" for
// /tmp/dir/f; "" for /): user space puts them root first. Returns its length + 1 (0: unknown, or
// longer than STR_HALF - 1 bytes). One fixed loop; the bound is checked on the next offset, so the
// verifier sees the offset in [0, STR_HALF) on every path and few distinct states. A dentry is one
// window read (its parent and name) plus its name; a mount crossed, one window read of the mount.
// `d` holds the first dentry, read already (the caller needed its fields too).
static __always_inline u32 kpath(struct kpath_scratch *s, void *vfsmnt, void *dentry, struct dent *d) {
    if (!vfsmnt || !dentry)
        return 0;
    void *mount = vfsmnt - OFF_MOUNT_MNT;  // struct mount embeds struct vfsmount
    struct mnt m = {};
    mnt_read(&m, mount);
    u32 off = 0;
    for (int i = 0; i < KPATH_SLOTS; i++) {
        if (i)
            dent_read(d, dentry);
        if (dentry == m.root || dentry == d->parent) {
            if (dentry != m.root || !m.parent || m.parent == mount)  // the global root (or a root mounted nowhere)
                return off + 1;
            dentry = m.mountpoint;  // on into the mount this one is mounted on
            mount = m.parent;
            mnt_read(&m, mount);
            continue;
        }
        u32 l = d->len;
        u64 next = (u64)off + (off ? 1 : 0) + l;
        if (next > STR_HALF - 1)
            return 0;
        if (off)
            s->buf[off & 255] = '/';
        bpf_probe_read_kernel(&s->buf[(off + (off ? 1 : 0)) & 255], l & 255, (void *)d->name);
        off = next;
        dentry = d->parent;
    }
    return 0;  // deeper than we walk
}

// A process's identity as the kernel keeps it: its exact start (CLOCK_MONOTONIC ns, where /proc
// gives clock ticks) and its real parent's tgid.
static __always_inline void task_identity(void *task, s64 *start, s64 *parent_tgid) {
    u64 t0 = 0;
    void *rp = 0;
    u32 ptgid = 0;
    RD(t0, task, OFF_TASK_START_TIME);
    RD(rp, task, OFF_TASK_REAL_PARENT);
    if (rp)
        RD(ptgid, rp, OFF_TASK_TGID);
    *start = t0;
    *parent_tgid = ptgid;
}

// The task that the current one just forked with pid `child`: copy_process put it last on its real
// parent's children list (the current task's, or with CLONE_PARENT its parent's). 0 if not there.
static __always_inline void *forked(u32 child) {
    void *parent = (void *)bpf_get_current_task();
    for (int i = 0; i < 2; i++) {
        void *last = 0;
        u32 pid = 0;
        RD(last, parent, OFF_TASK_CHILDREN + OFF_LIST_PREV);
        void *t = last - OFF_TASK_SIBLING;
        RD(pid, t, OFF_TASK_PID);
        if (last && pid == child)
            return t;
        void *up = 0;
        RD(up, parent, OFF_TASK_REAL_PARENT);
        parent = up;
    }
    return 0;
}

// The kernel's path of (vfsmount, dentry) as the record's second string (EV_KPATH); `d` is the
// dentry's fields, read already.
static __always_inline void put_kpath_of(struct event *e, struct kpath_scratch *s, void *vfsmnt, void *dentry,
                                         struct dent *d) {
    u32 n = kpath(s, vfsmnt, dentry, d);
    if (n) {
        bpf_probe_read_kernel(&e->str[STR_HALF], STR_HALF, s->buf);
        e->len2 = n - 1;
        e->flags |= EV_KPATH;
    }
}

// Whether a completed syscall's record carries what the kernel opened (then it goes out as a full
// record: its second string is the kernel's path).
static __always_inline int wants_kpath(u16 kind, long ret) {
    return (kind == K_OPEN && ret >= 0) || ((kind == K_CHDIR || kind == K_FCHDIR) && ret == 0);
}

// struct file: f_inode, f_path.mnt, f_path.dentry; struct inode: i_sb, i_ino
#define FILE_LO MIN2(OFF_FILE_INODE, MIN2(OFF_FILE_PATH_MNT, OFF_FILE_PATH_DENTRY))
#define FILE_HI (MAX2(OFF_FILE_INODE, MAX2(OFF_FILE_PATH_MNT, OFF_FILE_PATH_DENTRY)) + 8)
#define INODE_LO MIN2(OFF_INODE_SB, OFF_INODE_INO)
#define INODE_HI (MAX2(OFF_INODE_SB, OFF_INODE_INO) + 8)

static __always_inline void put_kpath(struct event *e, u16 kind, long ret) {
    u32 zero = 0;
    struct kpath_scratch *s = kpath_scratch.lookup(&zero);
    if (!s)
        return;
    void *vfsmnt = 0, *dentry = 0;
    struct dent d = {};
    u64 win[WIN_BYTES / 8];
    if (kind == K_OPEN) {
        void *file = fd_file(ret);
        if (!file)
            return;
        void *inode = 0, *sb = 0;
        u64 ino = 0;
        u32 dev = 0;
        WIN_READ(win, file, FILE_LO, FILE_HI);
        WIN_GET(inode, win, FILE_LO, file, OFF_FILE_INODE);
        WIN_GET(vfsmnt, win, FILE_LO, file, OFF_FILE_PATH_MNT);
        WIN_GET(dentry, win, FILE_LO, file, OFF_FILE_PATH_DENTRY);
        if (inode) {
            WIN_READ(win, inode, INODE_LO, INODE_HI);
            WIN_GET(ino, win, INODE_LO, inode, OFF_INODE_INO);
            WIN_GET(sb, win, INODE_LO, inode, OFF_INODE_SB);
            if (sb)
                RD(dev, sb, OFF_SB_DEV);
        }
        e->a4 = ino;
        e->a5 = dev;
        if (!dentry)
            return;
        dent_read(&d, dentry);
        if (!d.pprev && d.parent != dentry)
            e->flags |= EV_UNLINKED;  // unhashed, not a root: d_path says " (deleted)"
    } else {
        void *task = (void *)bpf_get_current_task();
        void *fs = 0;
        RD(fs, task, OFF_TASK_FS);
        if (!fs)
            return;
        RD(vfsmnt, fs, OFF_FS_PWD_MNT);
        RD(dentry, fs, OFF_FS_PWD_DENTRY);
        if (!dentry)
            return;
        dent_read(&d, dentry);
    }
    put_kpath_of(e, s, vfsmnt, dentry, &d);
}

// The running program's file as the kernel holds it (what /proc/PID/exe shows) as the record's
// second string: mm->exe_file's path.
static __always_inline void put_exe(struct event *e, void *task) {
    u32 zero = 0;
    struct kpath_scratch *s = kpath_scratch.lookup(&zero);
    void *mm = 0, *exe = 0, *vfsmnt = 0, *dentry = 0;
    struct dent d = {};
    if (!s)
        return;
    RD(mm, task, OFF_TASK_MM);
    if (mm)
        RD(exe, mm, OFF_MM_EXE_FILE);
    if (!exe)
        return;
    RD(vfsmnt, exe, OFF_FILE_PATH_MNT);
    RD(dentry, exe, OFF_FILE_PATH_DENTRY);
    if (!dentry)
        return;
    dent_read(&d, dentry);
    put_kpath_of(e, s, vfsmnt, dentry, &d);
}

// The inodes of the fds a pipe, socket, socketpair or accept made (what /proc shows as pipe:[N]).
static __always_inline void put_fd_inodes(struct fact *e, u16 kind, long ret) {
    if (kind == K_PIPE || kind == K_SOCKETPAIR) {
        if (ret == 0) {
            e->a4 = file_ino(fd_file(e->a0));
            if (kind == K_SOCKETPAIR)
                e->a5 = file_ino(fd_file(e->a1));
        }
    } else if ((kind == K_SOCKET || kind == K_ACCEPT) && ret >= 0) {
        e->a4 = file_ino(fd_file(ret));
    }
}
#else
static __always_inline int wants_kpath(u16 kind, long ret) { return 0; }
#endif

// ---------------------------------------------------------------- process lifecycle

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!is_tracked_tgid(tgid))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    s64 flags = -1;
    u64 *f = cloneflags.lookup(&tid);
    if (f) {
        flags = (s64)*f;
        cloneflags.delete(&tid);
    }
    u32 child = args->child_pid;
    u32 child_tgid = tgid;
    if (flags == -1 || !(flags & CLONE_THREAD_FLAG)) {
        set_tracked(child, 1);
        child_tgid = child;
    }
    if (tids.update(&child, &child_tgid))
        dropped(DROP_SCOPE_RANGE);
#ifndef SYSTEM_WIDE
    scope_changed();  // a new thread too: its stack may be one a CPU's memo holds as out of scope
#endif
#ifndef NO_SYSCALLS
    u32 unsent = 0;
    sc_comm.update(&child, &unsent);  // the new thread's first syscall record names it
#endif
    struct fact *e = new_fact(K_FORK);
    if (!e)
        return 0;
    e->a0 = args->parent_pid;
    e->a1 = child;
    e->a2 = flags;
#ifdef KERNEL_IDENTITY
    if (child_tgid == child) {  // a process: its exact start and real parent (a4, a5)
        void *t = forked(child);
        if (t)
            task_identity(t, &e->a4, &e->a5);
    }
#endif
    send_fact(e);
    return 0;
}

static __always_inline int stash_clone(u64 flags) {
    if (!is_tracked())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (cloneflags.update(&tid, &flags))
        dropped(DROP_MAP_CLONEFLAGS);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone) { return stash_clone(args->clone_flags); }
TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u64 flags = 0;
    read_user(&flags, sizeof(flags), (void *)args->uargs);  // clone_args.flags is first
    return stash_clone(flags);
}
#ifdef HAVE_fork
TRACEPOINT_PROBE(syscalls, sys_enter_fork) { return stash_clone(0); }
#endif
#ifdef HAVE_vfork
TRACEPOINT_PROBE(syscalls, sys_enter_vfork) { return stash_clone(0); }
#endif

TRACEPOINT_PROBE(sched, sched_process_exec) {
    if (!is_tracked())
        return 0;
    if (args->old_pid != args->pid) {  // a thread other than the leader exec'd: it has the leader's pid now
#ifndef SYSTEM_WIDE
        scope_changed();  // no CPU's memo may keep its old one (the leader may have exited long before)
#endif
#ifndef NO_SYSCALLS
        // the execve it is in returns under the new tid: its entry moves there
        u32 old_tid = args->old_pid, new_tid = args->pid;
        struct sc_slot *from = sc_slot.lookup(&old_tid);
        if (from) {
            struct sc_slot moved = *from;
            struct sc_slot none_in = {};
            sc_slot.update(&new_tid, &moved);
            sc_slot.update(&old_tid, &none_in);
        }
        struct sc_exec_args *regs = sc_exec.lookup(&old_tid);
        if (regs) {
            struct sc_exec_args copy = *regs;
            sc_exec.delete(&old_tid);
            if (sc_exec.update(&new_tid, &copy))
                dropped(DROP_MAP_SC_EXEC);
        }
#endif
    }
    struct event *e = new_event(K_EXEC);
    if (!e)
        return 0;
    e->a0 = args->old_pid;
#ifdef KERNEL_IDENTITY
    void *task = (void *)bpf_get_current_task();
    task_identity(task, &e->a4, &e->a5);  // exact start, real parent
    put_exe(e, task);                     // the program as the kernel holds it (/proc/PID/exe)
#endif
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    long n = bpf_probe_read_kernel_str(&e->str, STR_HALF, (void *)args + loc);
    e->len1 = str_len(n);
    send(e);
    return 0;
}

static __always_inline int exec_enter(const char *filename, const char *const *argv) {
    if (!is_tracked())
        return 0;
    struct inflight f = {};
    f.kind = K_EXEC_FAIL;
    f.p1 = (u64)filename;
    u64 id = bpf_get_current_pid_tgid();
    pend_put(id, &f);

    struct event *e = new_event(K_EXEC_ARGS);
    if (!e)
        return 0;
    u32 off = 0;
    int i;
    s64 argc = 0;
#pragma unroll
    for (i = 0; i < ARGV_MAX; i++) {
        const char *p = NULL;
        if (read_user(&p, sizeof(p), &argv[i]) || !p)
            break;
        if (off >= STR_HALF) {
            e->a1 = 1;
            break;
        }
        long n = read_user_str(&e->str[off & (STR_HALF - 1)], STR_HALF, p);
        if (n <= 0)
            break;
        off += n;
        argc++;
    }
    e->a0 = argc;
    e->len1 = off > STR_LEN ? STR_LEN : off;
    send(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return exec_enter(args->filename, args->argv);
}
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return exec_enter(args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group) {
    if (!is_tracked())
        return 0;
    struct fact *e = new_fact(K_EXIT_CALL);
    if (!e)
        return 0;
    e->a0 = args->error_code;
    e->a1 = 1;
    send_fact(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit) {
    if (!is_tracked())
        return 0;
    struct fact *e = new_fact(K_EXIT_CALL);
    if (!e)
        return 0;
    e->a0 = args->error_code;
    e->a1 = 0;
    send_fact(e);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!is_tracked_tgid(tgid))
        return 0;
    u32 tid = (u32)id;
    u32 none = 0;
    pend_forget(id);
    cloneflags.delete(&tid);
    tids.update(&tid, &none);
    woken.delete(&tid);
#ifndef NO_SYSCALLS
    struct sc_slot none_in = {};
    sc_slot.update(&tid, &none_in);  // a thread that reuses this tid starts with no call entered
    sc_exec.delete(&tid);
    u32 unsent = 0;
    sc_comm.update(&tid, &unsent);  // a thread that reuses this tid sends its own name
#endif
    struct fact *e = new_fact(K_TASK_EXIT);
    if (e) {
        e->a0 = args->group_dead;
        send_fact(e);
    }
    if (args->group_dead)
        set_tracked(tgid, 0);
#ifndef SYSTEM_WIDE
    scope_changed();  // its stack goes to another task: no CPU's memo may answer for it
#endif
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_wait4) {
    if (!is_tracked())
        return 0;
    struct inflight f = {};
    f.kind = K_WAIT;
    f.p1 = (u64)args->stat_addr;
    u64 id = bpf_get_current_pid_tgid();
    pend_put(id, &f);
    return 0;
}

// ---------------------------------------------------------------- fd and file syscalls

// A syscall's arguments kept from enter to exit, for a thread already known to be in scope.
static __always_inline int stash_in_scope(u16 kind, u16 sub, u64 a0, u64 a1, u64 a2, u64 a3, const void *p1,
                                          const void *p2) {
    struct inflight f = {};
    f.kind = kind;
    f.sub = sub;
    f.a[0] = a0;
    f.a[1] = a1;
    f.a[2] = a2;
    f.a[3] = a3;
    f.p1 = (u64)p1;
    f.p2 = (u64)p2;
    u64 id = bpf_get_current_pid_tgid();
    pend_put(id, &f);
    return 0;
}

static __always_inline int stash(u16 kind, u16 sub, u64 a0, u64 a1, u64 a2, u64 a3, const void *p1,
                                 const void *p2) {
    if (!is_tracked())
        return 0;
    return stash_in_scope(kind, sub, a0, a1, a2, a3, p1, p2);
}

static __always_inline void io_flush(struct io_key *k, struct io_total *t, u64 now) {
    if (!t->calls)
        return;
    struct fact *e = new_fact(K_IO);
    if (e) {
        e->a0 = k->fd;
        e->a1 = t->out;
        e->a2 = t->in;
        e->a3 = t->calls;
        send_fact(e);
    }
    t->out = 0;
    t->in = 0;
    t->calls = 0;
    t->first = now;
}


// A completed syscall's result and saved arguments into any state-lane record (event, event_short,
// fact): what the three record classes share.
#define FILL_RESULT(e, f, kind, ret_)                      \
    do {                                                   \
        (e)->ret = (ret_);                                 \
        (e)->a0 = (f)->a[0];                               \
        (e)->a1 = (kind) == K_ANONFD ? (f)->sub : (f)->a[1]; \
        (e)->a2 = (f)->a[2];                               \
        (e)->a3 = (f)->a[3];                               \
    } while (0)

// A completed syscall with no string to read: a compact record, the pointers read as numbers.
static __always_inline int complete_fact(struct inflight *f, u16 kind, long ret, u64 id) {
    struct fact *e = new_fact(kind);
    if (!e) {
        pend_done(id, f);
        return 0;
    }
    FILL_RESULT(e, f, kind, ret);
    if (kind == K_PIPE || kind == K_SOCKETPAIR) {
        int fds[2] = {-1, -1};
        if (ret == 0)
            read_user(&fds, sizeof(fds), (void *)f->p1);
        e->a0 = fds[0];
        e->a1 = fds[1];
    } else if (kind == K_WAIT) {
        int status = -1;
        if (ret > 0 && f->p1)
            read_user(&status, sizeof(status), (void *)f->p1);
        e->a0 = status;
    }
#ifdef KERNEL_IDENTITY
    put_fd_inodes(e, kind, ret);
#endif
    pend_done(id, f);
    send_fact(e);
    return 0;
}

// A completed syscall whose one string is a path: read straight into a short record, which goes out
// if the path fit (most do). Returns 0 then; 1 if it did not fit (the record is discarded: the caller
// sends a full one) or no short record could be had.
static __always_inline int complete_short(struct inflight *f, u16 kind, long ret, u64 id) {
    struct event_short *e = rb_short.ringbuf_reserve(sizeof(struct event_short));
    if (!e)
        return 1;  // not a loss: the full ring takes it
    long n = read_user_str(&e->str, STR_SHORT, (void *)f->p1);
    if (n >= STR_SHORT) {  // STR_SHORT - 1 bytes and no NUL yet: may be longer
        rb_short.ringbuf_discard(e, BPF_RB_NO_WAKEUP);
        return 1;
    }
    FILL_HEAD(e, kind);
    FILL_STATE(e);
    e->len1 = str_len(n);
    FILL_RESULT(e, f, kind, ret);
    pend_done(id, f);
    rb_short.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

// Completes the syscall saved at enter: one record with its result, strings read from user memory
// (the kernel has already copied them in, so they are paged in).
static __always_inline int complete_as(long ret, int kpath_here) {
    u64 id = bpf_get_current_pid_tgid();
    struct inflight *f = pend_get(id);
    if (!f)
        return 0;
    u16 kind = f->kind;
    if (kind == K_EXEC_FAIL && ret == 0) {  // exec succeeded: sched_process_exec told it
        pend_done(id, f);
        return 0;
    }
#ifdef AGGREGATE_IO
    if (kind == K_CLOSE && ret != -9) {  // the fd's last bytes go out before its close
        struct io_key k = {.tgid = id >> 32, .fd = (s32)f->a[0]};
        struct io_total *t = io.lookup(&k);
        if (t) {
            io_flush(&k, t, 0);
            io.delete(&k);
        }
    }
#endif
    int sockaddr = kind == K_BIND || kind == K_CONNECT || kind == K_ACCEPT || kind == K_SOCKNAME;
    int kp = kpath_here && wants_kpath(kind, ret);
    if (!sockaddr && !kp && (!f->p1 || kind == K_PIPE || kind == K_SOCKETPAIR || kind == K_WAIT))
        return complete_fact(f, kind, ret, id);
    if (!sockaddr && !kp && !f->p2 && !complete_short(f, kind, ret, id))
        return 0;
    struct event *e = new_event(kind);
    if (!e) {
        pend_done(id, f);
        return 0;
    }
    FILL_RESULT(e, f, kind, ret);
    if (sockaddr) {
        int out = kind == K_ACCEPT || kind == K_SOCKNAME;  // the kernel fills the address in
        u32 n = out ? 0 : (u32)f->a[1];
        if (out && ret >= 0 && f->p2) {
            int alen = 0;
            read_user(&alen, sizeof(alen), (void *)f->p2);
            n = alen > 0 ? alen : 0;
        }
        if (n > SOCKADDR_MAX)
            n = SOCKADDR_MAX;
        u64 sz = n;
        asm volatile("%0 &= 0x7f" : "+r"(sz));  // a bound the verifier sees (the compiler drops plain masks)
        if (f->p1 && sz > 0 && (!out || ret >= 0)) {
            read_user(&e->str, sz, (void *)f->p1);
            e->len1 = sz;
        }
        if (kind == K_BIND && ret == 0 && n >= 4) {  // family, then the port in network order
            u16 family = *(u16 *)&e->str[0];
            if (family == 2 || family == 10) {
                u16 port = ((u8)e->str[2] << 8) | (u8)e->str[3];
                u8 one = 1;
                if (tports.update(&port, &one))
                    dropped(DROP_MAP_TPORTS);
            }
        }
        if (kind == K_ACCEPT) {
            e->a1 = 0;
#ifdef KERNEL_IDENTITY
            if (ret >= 0)
                e->a4 = file_ino(fd_file(ret));
#endif
        }
        pend_done(id, f);
        send(e);
        return 0;
    }
    {  // a path (two for rename; or the path passed and the kernel's)
        long n = f->p1 ? read_user_str(&e->str, STR_HALF, (void *)f->p1) : 0;
        e->len1 = str_len(n);
        if (f->p2) {
            n = read_user_str(&e->str[STR_HALF], STR_HALF, (void *)f->p2);
            e->len2 = str_len(n);
        }
    }
    if (kind == K_RENAME)
        e->a4 = renames_entered();
#ifdef KERNEL_IDENTITY
    if (kp)
        put_kpath(e, kind, ret);
#endif
    pend_done(id, f);
    send(e);
    return 0;
}

#define AT_FDCWD_V ((u64)(s64)-100)
// fd-like arguments are C ints: sign-extend them so user space reads -100 (AT_FDCWD), not 2^32-100.
#define I(x) ((u64)(s64)(int)(x))
#define O_CREAT_WRONLY_TRUNC (0100 | 01 | 01000)

// Only the exits whose record may carry the kernel's path compile the dentry walk in (it is long to
// verify: in every exit program it doubled the probe's load time).
static __always_inline int complete(long ret) { return complete_as(ret, 0); }

// The state lane's exits: the calls of every EXIT(name) / EXIT_KPATH(name) below. With the
// every-syscall stream on, the raw sys_exit hook completes them (on_sys_exit, state_nr). Without it
// (NO_SYSCALLS) they are two programs, each attached by the loader (probes/loader.py, state_exits)
// to the sys_exit_<name> tracepoint of those syscalls: every syscall exit tracepoint has this one
// layout. One compiled copy of complete_as instead of one per syscall makes the program a third of
// its size and BCC's compile (the recorder's start-up) about three times quicker; only the build
// that attaches them compiles them.
#ifdef NO_SYSCALLS
struct sys_exit_args {
    u64 common;
    int syscall_nr;
    long ret;
};
int state_exit(struct sys_exit_args *args) { return complete(args->ret); }
int state_exit_kpath(struct sys_exit_args *args) { return complete_as(args->ret, 1); }
#endif
#define EXIT(name)
#define EXIT_KPATH(name)

EXIT(execve)
EXIT(execveat)
EXIT(wait4)

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    return stash(K_OPEN, 0, I(args->dfd), 0, args->flags, args->mode, args->filename, NULL);
}
EXIT_KPATH(openat)

TRACEPOINT_PROBE(syscalls, sys_enter_openat2) {
    u64 flags = 0;
    read_user(&flags, sizeof(flags), (void *)args->how);  // open_how.flags is first
    return stash(K_OPEN, 2, I(args->dfd), 0, flags, 0, args->filename, NULL);
}
EXIT_KPATH(openat2)

#ifdef HAVE_open
TRACEPOINT_PROBE(syscalls, sys_enter_open) {
    return stash(K_OPEN, 0, AT_FDCWD_V, 0, args->flags, args->mode, args->filename, NULL);
}
EXIT_KPATH(open)
#endif

#ifdef HAVE_creat
TRACEPOINT_PROBE(syscalls, sys_enter_creat) {
    return stash(K_OPEN, 0, AT_FDCWD_V, 0, O_CREAT_WRONLY_TRUNC, args->mode, args->pathname, NULL);
}
EXIT_KPATH(creat)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_close) { return stash(K_CLOSE, 0, I(args->fd), 0, 0, 0, NULL, NULL); }
EXIT(close)

TRACEPOINT_PROBE(syscalls, sys_enter_close_range) {
    return stash(K_CLOSE_RANGE, 0, I(args->fd), args->max_fd, args->flags, 0, NULL, NULL);
}
EXIT(close_range)

TRACEPOINT_PROBE(syscalls, sys_enter_dup) {
    return stash(K_DUP, 0, I(args->fildes), (u64)(s64)-1, 0, 0, NULL, NULL);
}
EXIT(dup)

#ifdef HAVE_dup2
TRACEPOINT_PROBE(syscalls, sys_enter_dup2) {
    return stash(K_DUP, 2, I(args->oldfd), I(args->newfd), 0, 0, NULL, NULL);
}
EXIT(dup2)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_dup3) {
    return stash(K_DUP, 3, I(args->oldfd), I(args->newfd), args->flags, 0, NULL, NULL);
}
EXIT(dup3)

#define F_DUPFD_V 0
#define F_SETFD_V 2
#define F_DUPFD_CLOEXEC_V 1030
#define O_CLOEXEC_V 02000000

TRACEPOINT_PROBE(syscalls, sys_enter_fcntl) {
    u64 cmd = args->cmd;
    if (cmd == F_DUPFD_V)
        return stash(K_DUP, 4, I(args->fd), (u64)(s64)-1, 0, 0, NULL, NULL);
    if (cmd == F_DUPFD_CLOEXEC_V)
        return stash(K_DUP, 4, I(args->fd), (u64)(s64)-1, O_CLOEXEC_V, 0, NULL, NULL);
    if (cmd == F_SETFD_V)
        return stash(K_SETFD, 0, I(args->fd), 0, args->arg, 0, NULL, NULL);
    return 0;
}
EXIT(fcntl)

// ioctl(FIOCLEX / FIONCLEX) sets or clears close-on-exec too (CPython's os.set_inheritable uses it).
#define FIONCLEX_V 0x5450
#define FIOCLEX_V 0x5451
TRACEPOINT_PROBE(syscalls, sys_enter_ioctl) {
    u64 cmd = args->cmd;
    if (cmd == FIOCLEX_V)
        return stash(K_SETFD, 1, I(args->fd), 0, 1, 0, NULL, NULL);
    if (cmd == FIONCLEX_V)
        return stash(K_SETFD, 1, I(args->fd), 0, 0, 0, NULL, NULL);
    return 0;
}
EXIT(ioctl)

TRACEPOINT_PROBE(syscalls, sys_enter_pipe2) {
    return stash(K_PIPE, 0, 0, 0, args->flags, 0, args->fildes, NULL);
}
EXIT(pipe2)

#ifdef HAVE_pipe
TRACEPOINT_PROBE(syscalls, sys_enter_pipe) {
    return stash(K_PIPE, 0, 0, 0, 0, 0, args->fildes, NULL);
}
EXIT(pipe)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_chdir) {
    return stash(K_CHDIR, 0, 0, 0, 0, 0, args->filename, NULL);
}
EXIT_KPATH(chdir)

TRACEPOINT_PROBE(syscalls, sys_enter_fchdir) { return stash(K_FCHDIR, 0, I(args->fd), 0, 0, 0, NULL, NULL); }
EXIT_KPATH(fchdir)

// A rename's place in the order renames entered (a3); its exit adds how many had entered by then (a4).
static __always_inline int rename_enter(u16 sub, u64 olddfd, u64 newdfd, u64 flags, const void *old,
                                        const void *new) {
    if (!is_tracked())
        return 0;
    u32 zero = 0;
    u64 *n = rename_seq.lookup(&zero);
    u64 seq = n ? __sync_fetch_and_add(n, 1) + 1 : 0;
    return stash_in_scope(K_RENAME, sub, olddfd, newdfd, flags, seq, old, new);
}


TRACEPOINT_PROBE(syscalls, sys_enter_renameat2) {
    return rename_enter(2, I(args->olddfd), I(args->newdfd), args->flags, args->oldname, args->newname);
}
EXIT(renameat2)

#ifdef HAVE_renameat
TRACEPOINT_PROBE(syscalls, sys_enter_renameat) {
    return rename_enter(1, I(args->olddfd), I(args->newdfd), 0, args->oldname, args->newname);
}
EXIT(renameat)
#endif

#ifdef HAVE_rename
TRACEPOINT_PROBE(syscalls, sys_enter_rename) {
    return rename_enter(0, AT_FDCWD_V, AT_FDCWD_V, 0, args->oldname, args->newname);
}
EXIT(rename)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat) {
    return stash(K_UNLINK, 0, I(args->dfd), 0, args->flag, 0, args->pathname, NULL);
}
EXIT(unlinkat)

#ifdef HAVE_unlink
TRACEPOINT_PROBE(syscalls, sys_enter_unlink) {
    return stash(K_UNLINK, 0, AT_FDCWD_V, 0, 0, 0, args->pathname, NULL);
}
EXIT(unlink)
#endif

#define AT_REMOVEDIR_V 0x200
#ifdef HAVE_rmdir
TRACEPOINT_PROBE(syscalls, sys_enter_rmdir) {
    return stash(K_UNLINK, 1, AT_FDCWD_V, 0, AT_REMOVEDIR_V, 0, args->pathname, NULL);
}
EXIT(rmdir)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_mkdirat) {
    return stash(K_MKDIR, 0, I(args->dfd), 0, 0, args->mode, args->pathname, NULL);
}
EXIT(mkdirat)

#ifdef HAVE_mkdir
TRACEPOINT_PROBE(syscalls, sys_enter_mkdir) {
    return stash(K_MKDIR, 0, AT_FDCWD_V, 0, 0, args->mode, args->pathname, NULL);
}
EXIT(mkdir)
#endif

// ---------------------------------------------------------------- other fd producers
// Enough to keep the fd table right; issue-level detail (addresses, bytes) is recorded elsewhere.

TRACEPOINT_PROBE(syscalls, sys_enter_socket) {
    return stash(K_SOCKET, 0, args->family, args->type, args->protocol, 0, NULL, NULL);
}
EXIT(socket)

TRACEPOINT_PROBE(syscalls, sys_enter_socketpair) {
    return stash(K_SOCKETPAIR, 0, 0, 0, args->type, args->family, args->usockvec, NULL);
}
EXIT(socketpair)

TRACEPOINT_PROBE(syscalls, sys_enter_accept) {
    return stash(K_ACCEPT, 0, I(args->fd), 0, 0, 0, args->upeer_sockaddr, args->upeer_addrlen);
}
EXIT(accept)

TRACEPOINT_PROBE(syscalls, sys_enter_accept4) {
    return stash(K_ACCEPT, 4, I(args->fd), 0, args->flags, 0, args->upeer_sockaddr, args->upeer_addrlen);
}
EXIT(accept4)

TRACEPOINT_PROBE(syscalls, sys_enter_bind) {
    return stash(K_BIND, 0, I(args->fd), args->addrlen, 0, 0, args->umyaddr, NULL);
}
EXIT(bind)

TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    return stash(K_CONNECT, 0, I(args->fd), args->addrlen, 0, 0, args->uservaddr, NULL);
}
EXIT(connect)

TRACEPOINT_PROBE(syscalls, sys_enter_getsockname) {
    return stash(K_SOCKNAME, 0, I(args->fd), 0, 0, 0, args->usockaddr, args->usockaddr_len);
}
EXIT(getsockname)

TRACEPOINT_PROBE(syscalls, sys_enter_listen) {
    return stash(K_LISTEN, 0, I(args->fd), args->backlog, 0, 0, NULL, NULL);
}
EXIT(listen)

TRACEPOINT_PROBE(syscalls, sys_enter_shutdown) {
    return stash(K_SHUTDOWN, 0, I(args->fd), args->how, 0, 0, NULL, NULL);
}
EXIT(shutdown)

// Every TCP state change of a tracked socket: in the owner's context, or (softirq) on a port a
// tracked socket bound or connected from.
TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    u16 sport = args->sport;
    u16 dport = args->dport;
    int mine = is_tracked();
#ifndef SYSTEM_WIDE
    if (!mine && !tports.lookup(&sport) && !tports.lookup(&dport))
        return 0;
#endif
    if (mine) {
        u8 one = 1;
        if (tports.update(&sport, &one))
            dropped(DROP_MAP_TPORTS);
    }
    struct event *e = new_event(K_SOCK_STATE);
    if (!e)
        return 0;
    e->a0 = args->oldstate;
    e->a1 = args->newstate;
    e->a2 = sport;
    e->a3 = dport;
    e->a4 = args->family;
    e->a5 = (u64)args->skaddr;
    if (args->family == 10) {
        bpf_probe_read_kernel(&e->str[0], 16, args->saddr_v6);
        bpf_probe_read_kernel(&e->str[16], 16, args->daddr_v6);
    } else {
        bpf_probe_read_kernel(&e->str[0], 4, args->saddr);
        bpf_probe_read_kernel(&e->str[16], 4, args->daddr);
    }
    e->len1 = 32;
    if (!mine) {  // softirq: the current task is not the socket's owner
        e->tgid = 0;
        e->tid = 0;
    }
    send(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_eventfd2) {
    return stash(K_ANONFD, ANON_EVENTFD, 0, 0, args->flags, 0, NULL, NULL);
}
EXIT(eventfd2)

TRACEPOINT_PROBE(syscalls, sys_enter_epoll_create1) {
    return stash(K_ANONFD, ANON_EPOLL, 0, 0, args->flags, 0, NULL, NULL);
}
EXIT(epoll_create1)

TRACEPOINT_PROBE(syscalls, sys_enter_memfd_create) {
    return stash(K_ANONFD, ANON_MEMFD, 0, 0, args->flags, 0, args->uname, NULL);
}
EXIT(memfd_create)

TRACEPOINT_PROBE(syscalls, sys_enter_timerfd_create) {
    return stash(K_ANONFD, ANON_TIMERFD, 0, 0, args->flags, 0, NULL, NULL);
}
EXIT(timerfd_create)

TRACEPOINT_PROBE(syscalls, sys_enter_signalfd4) {
    return stash(K_ANONFD, ANON_SIGNALFD, I(args->ufd), 0, args->flags, 0, NULL, NULL);
}
EXIT(signalfd4)

TRACEPOINT_PROBE(syscalls, sys_enter_inotify_init1) {
    return stash(K_ANONFD, ANON_INOTIFY, 0, 0, args->flags, 0, NULL, NULL);
}
EXIT(inotify_init1)

TRACEPOINT_PROBE(syscalls, sys_enter_pidfd_open) {
    return stash(K_ANONFD, ANON_PIDFD, I(args->pid), 0, args->flags, 0, NULL, NULL);
}
TRACEPOINT_PROBE(syscalls, sys_exit_pidfd_open) {
#ifdef KERNEL_IDENTITY
    if ((bpf_get_current_pid_tgid() >> 32) == SELF_TGID && SELF_TGID != 0) {
        // the recorder asks for its /proc baseline: the process behind the pidfd as the kernel keeps it
        // (a pidfd's inode holds its struct pid; the pid's first PIDTYPE_PID task is the process)
        void *file = fd_file(args->ret), *inode = 0, *pid = 0, *node = 0;
        if (file)
            RD(inode, file, OFF_FILE_INODE);
        if (inode)
            RD(pid, inode, OFF_INODE_PRIVATE);
        if (pid)
            RD(node, pid, OFF_PID_TASKS);
        if (!node)
            return 0;
        void *task = node - OFF_TASK_PID_LINKS;
        struct fact *e = new_fact(K_IDENTITY);
        if (!e)
            return 0;
        u32 tgid = 0;
        RD(tgid, task, OFF_TASK_TGID);
        e->tgid = tgid;
        e->tid = tgid;
        task_identity(task, &e->a0, &e->a1);
        send_fact(e);
        return 0;
    }
#endif
    return complete(args->ret);
}

// ---------------------------------------------------------------- cgroups
// A task moved to another cgroup (a write to cgroup.procs, a container runtime placing a process):
// told for tasks in scope. With CGROUP_SCOPE (record --cgroup), a task moved into the recorded cgroup
// or beneath it comes into scope here; `cg_scope` holds that cgroup's hierarchy id and path.
#ifdef CGROUP_SCOPE
struct cg_scope_t {
    u32 root;
    u32 len;        // bytes of path, without the NUL
    char path[STR_HALF];
};
BPF_ARRAY(cg_scope, struct cg_scope_t, 1);

static __always_inline int in_cgroup_scope(struct event *e, u32 root) {
    u32 zero = 0;
    struct cg_scope_t *s = cg_scope.lookup(&zero);
    if (!s || root != s->root || s->len == 0 || s->len >= STR_HALF)
        return 0;
    u32 len = s->len;
    for (int i = 0; i < STR_HALF - 1; i++) {
        char c = e->str[i];
        if (i == len)  // all of the scope's path matched: the cgroup itself or one beneath it
            return len == 1 || c == '/' || c == 0;
        if (c != s->path[i])
            return 0;
    }
    return 0;
}
#endif

TRACEPOINT_PROBE(cgroup, cgroup_attach_task) {
    u32 pid = args->pid;
    u32 *t = tids.lookup(&pid);
    u32 tgid = t && *t ? *t : pid;
    int in = is_tracked_tgid(tgid);
#ifndef CGROUP_SCOPE
    if (!in)
        return 0;
#endif
    struct event *e = new_event(K_CGROUP);
    if (!e)
        return 0;
    e->tgid = tgid;
    e->tid = pid;
    e->a0 = args->dst_root;
    e->a1 = args->dst_level;
    e->a2 = args->dst_id;
    unsigned short loc = args->data_loc_dst_path & 0xFFFF;
    long n = bpf_probe_read_kernel_str(&e->str, STR_HALF, (void *)args + loc);
    e->len1 = str_len(n);
    unsigned short cloc = args->data_loc_comm & 0xFFFF;  // the moved task's name, not the mover's
    bpf_probe_read_kernel_str(&e->comm, sizeof(e->comm), (void *)args + cloc);
#ifdef CGROUP_SCOPE
    if (!in && in_cgroup_scope(e, args->dst_root)) {
        set_tracked(pid, 1);  // a process moved in (for a thread, its tid: the leader moves too)
        tids.update(&pid, &pid);
        in = 1;
    }
    if (!in) {
        events.ringbuf_discard(e, BPF_RB_NO_WAKEUP);
        return 0;
    }
#endif
    send(e);
    return 0;
}

// ---------------------------------------------------------------- signals and the OOM killer

TRACEPOINT_PROBE(signal, signal_generate) {
    u32 target = args->pid;
    if (!is_tracked() && !is_tracked_tgid(target))
        return 0;
    struct event *e = new_event(K_SIGNAL_GENERATE);
    if (!e)
        return 0;
    e->a0 = args->sig;
    e->a1 = target;
    e->a2 = args->code;
    e->a3 = args->group;
    e->ret = args->result;
    long n = bpf_probe_read_kernel_str(&e->str, 16, args->comm);
    e->len1 = str_len(n);
    send(e);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver) {
    if (!is_tracked())
        return 0;
    struct fact *e = new_fact(K_SIGNAL_DELIVER);
    if (!e)
        return 0;
    e->a0 = args->sig;
    e->a2 = args->code;
    e->a3 = args->sa_handler;
    send_fact(e);
    return 0;
}

TRACEPOINT_PROBE(oom, mark_victim) {
    if (!is_tracked_tgid(args->pid))
        return 0;
    struct event *e = new_event(K_OOM_VICTIM);
    if (!e)
        return 0;
    e->a0 = args->pid;
    e->a1 = args->uid;
    e->a2 = args->total_vm;
    e->a3 = args->oom_score_adj;
    unsigned short loc = args->data_loc_comm & 0xFFFF;
    long n = bpf_probe_read_kernel_str(&e->str, 16, (void *)args + loc);
    e->len1 = str_len(n);
    send(e);
    return 0;
}

// ---------------------------------------------------------------- every syscall (raw tracepoints)
// One record per syscall, written when it returns. sys_enter writes no record: it notes the entry
// time, number and CPU in the thread's `sc_slot` (an array: a store, no hash, no ring); sys_exit
// reads the slot back and writes the whole call at once, its argument registers read from the
// same struct pt_regs (the architecture's syscall ABI, stable across kernels; a syscall leaves
// them as it found them) as one window with one read. One ring reservation and one register read
// a call instead of two and two (an enter and an exit record, paired in user space). The scope
// test is a few loads of the CPU's memos (`in_memo`, `out_memo`) once it has seen the task. What
// is left is the two clock reads, about 40 ns each here, and the record, about 35-55 ns: writing
// its 128 bytes, more than the reserve and submit calls (bench/helper_costs.py).
// execve and execveat replace the registers before they return: their arguments are read at entry
// into `sc_exec` (a small hash, exec calls only). exit and exit_group never return: written at entry.

#ifndef NO_SYSCALLS
// The syscall's argument registers (the window of struct pt_regs that holds them), as they are at
// sys_exit. Each hook is compiled twice: `btf` 1 for a BTF raw tracepoint, which the loader uses
// where the kernel's BTF declares the hook: the verifier knows its first argument as the task's
// struct pt_regs, so the window is eight plain loads (a few ns) instead of a bpf_probe_read_kernel
// (about 50 ns here); `btf` 0 for a plain raw tracepoint, the fallback. The loads are written in
// asm: BCC turns a dereference in C into a probe read.
#define REG_LOAD(dst, regs, off) asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(dst) : "r"(regs), "i"(off))
static __always_inline void read_regs(u64 *dst, void *regs, const int btf) {
    if (btf) {
        u64 v0, v1, v2, v3, v4, v5, v6, v7;
        REG_LOAD(v0, regs, REGS_WINDOW + 0);
        REG_LOAD(v1, regs, REGS_WINDOW + 8);
        REG_LOAD(v2, regs, REGS_WINDOW + 16);
        REG_LOAD(v3, regs, REGS_WINDOW + 24);
        REG_LOAD(v4, regs, REGS_WINDOW + 32);
        REG_LOAD(v5, regs, REGS_WINDOW + 40);
        REG_LOAD(v6, regs, REGS_WINDOW + 48);
        REG_LOAD(v7, regs, REGS_WINDOW + 56);
        dst[0] = v0;
        dst[1] = v1;
        dst[2] = v2;
        dst[3] = v3;
        dst[4] = v4;
        dst[5] = v5;
        dst[6] = v6;
        dst[7] = v7;
#ifdef REGS_ARG0_AT_EXIT
        REG_LOAD(v0, regs, REGS_ARG0_AT_EXIT);
        dst[REGS_ARG0] = v0;
#endif
    } else {
        bpf_probe_read_kernel(dst, 8 * sizeof(u64), regs + REGS_WINDOW);
#ifdef REGS_ARG0_AT_EXIT
        bpf_probe_read_kernel(&dst[REGS_ARG0], sizeof(u64), regs + REGS_ARG0_AT_EXIT);
#endif
    }
}

// A degraded syscall of the current thread: entered at t0, returned `ret` at `now`.
static __always_inline void sc_aggregate(u64 id, u32 nr, u64 t0, long ret, u64 now) {
    u32 zero = 0;
    u32 *epoch = sc_ctl.lookup(&zero);
    struct sc_agg_key k = {.tgid = id >> 32, .tid = (u32)id, .nr = nr, .epoch = epoch ? *epoch : 0};
    u64 failed = ret < 0 && ret >= -4095;
    struct sc_agg *a = sc_agg.lookup(&k);
    if (a) {  // only this thread writes this entry: plain adds
        a->count += 1;
        a->errors += failed;
        a->dur += now - t0;
        a->last = now;
        return;
    }
    struct sc_agg n = {};
    n.count = 1;
    n.errors = failed;
    n.dur = now - t0;
    n.first = t0;
    n.last = now;
    n.tgid = k.tgid;
    n.tid = k.tid;
    n.nr = nr;
    bpf_get_current_comm(&n.comm, sizeof(n.comm));
    if (sc_agg.update(&k, &n))
        dropped(DROP_MAP_SC_AGG);
}

// The record of a call of the current thread that entered at t0 on `cpu` and returned `ret` now; its
// argument registers are in `regs` (the pt_regs of sys_exit), or in `saved` when given. Degraded
// (added to `sc_agg`) when the ring has no room.
static __always_inline void sc_record(u64 id, u32 nr, u32 cpu, u64 t0, long ret, u64 now, void *regs, u64 *saved,
                                      const int btf) {
    struct sc_call *c = rb_sc.ringbuf_reserve(sizeof(struct sc_call));
    if (!c) {
        sc_aggregate(id, nr, t0, ret, now);
        return;
    }
    u32 tid = (u32)id;
    c->ts = t0;
    c->dur = now - t0;
    c->ret = ret;
    c->tid = tid;
    c->tgid = id >> 32;
    c->nr = nr;
    c->cpu = cpu;
    c->pad = 0;
    if (saved) {
        __builtin_memcpy(&c->regs, saved, sizeof(c->regs));
    } else {
        read_regs(c->regs, regs, btf);
    }
    u32 *sent = sc_comm.lookup(&tid);
    if (sent && !*sent) {  // the thread's first syscall, or its name changed since: send it once
        bpf_get_current_comm(&c->comm, sizeof(c->comm));
        c->flags = SC_COMM;
        *sent = 1;
    } else {
        c->flags = 0;
    }
    rb_sc.ringbuf_submit(c, BPF_RB_NO_WAKEUP);
}

static __always_inline int on_sys_enter(struct bpf_raw_tracepoint_args *ctx, const int btf) {
    u64 id = 0;
    if (!sc_in_scope((void *)ctx->args[0], &id))
        return 0;
    u32 tid = (u32)id;
    struct sc_slot *s = sc_slot.lookup(&tid);
    if (!s)
        return 0;  // a tid beyond PID_MAX: cannot happen (the scope test would have failed)
    u32 nr = ctx->args[1];
    u64 now = bpf_ktime_get_ns();
    if (nr == NR_EXIT || nr == NR_EXIT_GROUP) {  // never returns: its record now
        s->ts = 0;
        sc_record(id, nr, bpf_get_smp_processor_id(), now, 0, now, (void *)ctx->args[0], NULL, btf);
        return 0;
    }
    if (nr == NR_EXECVE || nr == NR_EXECVEAT) {
        struct sc_exec_args a = {};
        bpf_probe_read_kernel(&a.regs, sizeof(a.regs), (void *)ctx->args[0] + REGS_WINDOW);
        if (sc_exec.update(&tid, &a))
            dropped(DROP_MAP_SC_EXEC);
    }
    s->ts = now;
    s->nr = nr;
    s->cpu = bpf_get_smp_processor_id();
    return 0;
}

// A thread's task name changed (exec, prctl(PR_SET_NAME), a write to /proc/PID/comm): its next
// record sends the new one. Rare, so no scope test.
TRACEPOINT_PROBE(task, task_rename) {
    u32 tid = args->pid;
    u32 unsent = 0;
    sc_comm.update(&tid, &unsent);
    return 0;
}

static __always_inline int on_sys_exit(struct bpf_raw_tracepoint_args *ctx, const int btf) {
    u64 id = 0;
    if (!sc_in_scope((void *)ctx->args[0], &id))
        return 0;
    u32 tid = (u32)id;
    struct sc_slot *s = sc_slot.lookup(&tid);
    if (!s || !s->ts)
        return 0;  // entered before the thread was in scope, or a new thread's first return (fork)
    u64 t0 = s->ts;
    u32 nr = s->nr;
    u32 cpu = s->cpu;
    s->ts = 0;
    long ret = ctx->args[1];
    if (nr < 1024) {  // a state-lane call (its enter stashed it): its fact first
        u8 *state = state_nr.lookup(&nr);
        if (state && *state)
            complete_as(ret, 1);  // the kernel's path only where the kind wants it (wants_kpath)
    }
#ifdef AGGREGATE_IO
    if (ret > 0 && nr < 1024) {
        u8 *dir = ionr.lookup(&nr);
        if (dir && *dir) {
            u64 fd = 0;
            bpf_probe_read_kernel(&fd, sizeof(fd), (void *)ctx->args[0] + REGS_WINDOW + REGS_ARG0 * 8);
#ifdef REGS_ARG0_AT_EXIT
            bpf_probe_read_kernel(&fd, sizeof(fd), (void *)ctx->args[0] + REGS_ARG0_AT_EXIT);
#endif
            struct io_key k = {.tgid = id >> 32, .fd = (s32)fd};
            u64 now = bpf_ktime_get_ns();
            struct io_total zero = {.first = now};
            struct io_total *t = io.lookup_or_try_init(&k, &zero);
            if (!t) {
                dropped(DROP_MAP_IO);
            } else {
                if (*dir == 1)
                    __sync_fetch_and_add(&t->out, ret);
                else
                    __sync_fetch_and_add(&t->in, ret);
                __sync_fetch_and_add(&t->calls, 1);
                if (t->calls >= IO_FLUSH_CALLS || now - t->first >= IO_FLUSH_NS)
                    io_flush(&k, t, now);
            }
            return 0;
        }
    }
#endif
    if (nr == NR_EXECVE || nr == NR_EXECVEAT) {
        struct sc_exec_args *a = sc_exec.lookup(&tid);
        if (a) {
            struct sc_exec_args copy = *a;
            sc_exec.delete(&tid);
            sc_record(id, nr, cpu, t0, ret, bpf_ktime_get_ns(), (void *)ctx->args[0], copy.regs, btf);
            return 0;
        }
    }
    sc_record(id, nr, cpu, t0, ret, bpf_ktime_get_ns(), (void *)ctx->args[0], NULL, btf);
    return 0;
}

// The loader attaches one pair to the raw tracepoints sys_enter and sys_exit: the BTF pair where
// the kernel takes it, else the plain one (the other pair is compiled, never loaded).
int sc_enter_btf(struct bpf_raw_tracepoint_args *ctx) { return on_sys_enter(ctx, 1); }
int sc_exit_btf(struct bpf_raw_tracepoint_args *ctx) { return on_sys_exit(ctx, 1); }
int sc_enter(struct bpf_raw_tracepoint_args *ctx) { return on_sys_enter(ctx, 0); }
int sc_exit(struct bpf_raw_tracepoint_args *ctx) { return on_sys_exit(ctx, 0); }
#endif

// ---------------------------------------------------------------- the scheduler
// Compact records in their own ring. The scope test comes first: the current task's tgid, then the
// other task's through `tids` (tid -> tgid, an array).

#ifndef NO_SCHED
static __always_inline u32 tgid_of(u32 tid) {
    u32 *t = tids.lookup(&tid);
    return t ? *t : 0;  // 0: not known (not in scope)
}

static __always_inline struct sched_rec *new_sched(u16 kind) {
    struct sched_rec *e = rb_sched.ringbuf_reserve(sizeof(struct sched_rec));
    if (!e) {
        dropped(DROP_RING_SCHED);
        return NULL;
    }
    FILL_HEAD(e, kind);
    e->a0 = 0;
    e->a1 = 0;
    e->a2 = 0;
    e->a3 = 0;
    e->dur = 0;
    return e;
}

TRACEPOINT_PROBE(sched, sched_switch) {
    u64 id = bpf_get_current_pid_tgid();
    u32 prev_tgid = id >> 32;
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;
    int prev_in = prev != 0 && is_tracked_tgid(prev_tgid);
    u32 next_tgid = next == 0 ? 0 : tgid_of(next);
    int next_in = next_tgid != 0 && is_tracked_tgid(next_tgid);
    if (!prev_in && !next_in) {
#ifdef SYSTEM_WIDE
        if (prev != 0)
            tids.update(&prev, &prev_tgid);
#endif
        return 0;
    }
#ifdef SYSTEM_WIDE
    if (prev != 0)
        tids.update(&prev, &prev_tgid);
#endif
    struct sched_rec *e = new_sched(K_SCHED_SWITCH);
    if (!e)
        return 0;
    if (!prev_in) {
        e->tgid = 0;
        e->tid = 0;
    }
    e->a0 = args->prev_state;
    e->a1 = next;
    e->a2 = next_in ? (s64)next_tgid : -1;
    e->a3 = prev;
    if (next_in) {
        u64 *w = woken.lookup(&next);
        if (w) {
            e->dur = e->ts - *w;
            woken.delete(&next);
        }
    }
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    long n = bpf_probe_read_kernel_str(&e->str, 16, args->next_comm);
    e->len1 = str_len(n);
    rb_sched.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

static __always_inline int on_wakeup(u32 tid, int cpu, int is_new) {
    u32 tgid = tgid_of(tid);
    if (!tgid || !is_tracked_tgid(tgid))
        return 0;
    u64 now = bpf_ktime_get_ns();
    if (woken.update(&tid, &now))
        dropped(DROP_MAP_WOKEN);
    struct sched_rec *e = new_sched(K_SCHED_WAKEUP);
    if (!e)
        return 0;
    e->tgid = tgid;
    e->tid = tid;
    e->a0 = cpu;
    e->a1 = is_new;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    rb_sched.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup) { return on_wakeup(args->pid, args->target_cpu, 0); }
TRACEPOINT_PROBE(sched, sched_wakeup_new) { return on_wakeup(args->pid, args->target_cpu, 1); }

TRACEPOINT_PROBE(sched, sched_migrate_task) {
    u32 tid = args->pid;
    u32 tgid = tgid_of(tid);
    if (!tgid || !is_tracked_tgid(tgid))
        return 0;
    struct sched_rec *e = new_sched(K_SCHED_MIGRATE);
    if (!e)
        return 0;
    e->tgid = tgid;
    e->tid = tid;
    e->a0 = args->orig_cpu;
    e->a1 = args->dest_cpu;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    rb_sched.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}
#endif
