// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * libwatch.bpf.c — the `tls` module's discovery of OpenSSL copies that
 * processes start using after rcapture started (not a capture module: it
 * emits control events on its own small ring buffer, read by rcapture's
 * discovery thread, src/discover.rs).
 *
 *  - tracepoint syscalls/sys_enter_mmap: a file mapping (fd >= 0) whose
 *    file name starts with "libssl.so" and whose inode (s_dev, i_ino) user
 *    space has not marked done in rc_lib_state → an RC_LW_LIB event; the
 *    inode is marked pending, and while it is pending every process that
 *    maps it without a controlling terminal is stopped (SIGSTOP, delivered
 *    when the mmap returns: before any code of the library runs) until user
 *    space has attached the uprobes and sends SIGCONT.
 *  - tp_btf sched_process_exec: an executable whose inode is not yet in
 *    rc_exec_seen → one RC_LW_EXEC event per inode (user space looks for
 *    OpenSSL linked in statically); the process is not stopped.
 *
 * Costs nothing for other syscalls (a per-syscall tracepoint), and one hash
 * lookup per mmap of a file or exec.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define RC_LW_LIB 1
#define RC_LW_EXEC 2
#define RC_LW_NAME 32
#define RC_MAP_ANONYMOUS 0x20
#define RC_SIGSTOP 19

#define RC_LIB_PENDING 0
#define RC_LIB_DONE 1

/* rcapture's own process: never stopped. */
const volatile __u32 self_tgid = 0;

struct rc_lw_key {
	__u64 dev; /* the kernel's dev_t of the inode's super block (MAJOR << 20 | MINOR) */
	__u64 ino;
};

/* Must match RawEvent in libwatch.rs. */
struct rc_lw_event {
	__u32 kind;    /* RC_LW_LIB, RC_LW_EXEC */
	__u32 pid;     /* tgid */
	__u64 dev;
	__u64 ino;
	__s32 fd;      /* RC_LW_LIB: the mmap's fd (open while the process is stopped) */
	__u32 held;    /* 1: SIGSTOP sent to the process */
	__u64 ktime;   /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	char name[RC_LW_NAME];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} rc_lw_ring SEC(".maps");

/* libssl inodes: RC_LIB_PENDING (being attached: hold its mappers) or
 * RC_LIB_DONE (attached or refused: nothing to do). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rc_lw_key);
	__type(value, __u32);
} rc_lib_state SEC(".maps");

/* Executable inodes already reported (or known to user space). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rc_lw_key);
	__type(value, __u8);
} rc_exec_seen SEC(".maps");

/* Events the ring had no room for, and signals that could not be sent
 * (index 0 and 1; user space shows them in /status). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} rc_lw_lost SEC(".maps");

/* The syscall tracepoint's record (events/syscalls/sys_enter_mmap/format). */
struct rc_mmap_args {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 addr;
	__u64 len;
	__u64 prot;
	__u64 flags;
	__u64 fd;
	__u64 off;
};

static __always_inline void lost(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&rc_lw_lost, &what);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void key_of(struct inode *inode, struct rc_lw_key *k)
{
	k->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k->ino = BPF_CORE_READ(inode, i_ino);
}

static __always_inline int has_prefix(const char *name)
{
	const char prefix[] = "libssl.so";

#pragma unroll
	for (int i = 0; i < (int)sizeof(prefix) - 1; i++)
		if (name[i] != prefix[i])
			return 0;
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int rc_lw_mmap(struct rc_mmap_args *ctx)
{
	struct task_struct *task;
	struct file **fds;
	struct file *file = NULL;
	struct rc_lw_event *e;
	struct rc_lw_key k;
	char name[RC_LW_NAME] = {};
	const unsigned char *dname;
	__u32 *state;
	__u32 pending = RC_LIB_PENDING;
	__u32 tgid;
	long fd = (long)ctx->fd;
	int held = 0;

	if (fd < 0 || (ctx->flags & RC_MAP_ANONYMOUS))
		return 0;
	task = bpf_get_current_task_btf();
	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	dname = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(name, sizeof(name), dname) < 0 || !has_prefix(name))
		return 0;
	key_of(BPF_CORE_READ(file, f_inode), &k);
	state = bpf_map_lookup_elem(&rc_lib_state, &k);
	if (state && *state == RC_LIB_DONE)
		return 0;
	if (!state)
		bpf_map_update_elem(&rc_lib_state, &k, &pending, BPF_NOEXIST);
	/* Reserved before the signal: a stopped process is always reported. */
	e = bpf_ringbuf_reserve(&rc_lw_ring, sizeof(*e), 0);
	if (!e) {
		lost(0);
		return 0;
	}
	tgid = bpf_get_current_pid_tgid() >> 32;
	/* A process on a terminal is not stopped: its shell would show it as
	 * a stopped job. */
	if (tgid != self_tgid && !BPF_CORE_READ(task, signal, tty)) {
		if (bpf_send_signal(RC_SIGSTOP) == 0)
			held = 1;
		else
			lost(1);
	}
	e->kind = RC_LW_LIB;
	e->pid = tgid;
	e->dev = k.dev;
	e->ino = k.ino;
	e->fd = (__s32)fd;
	e->held = held;
	e->ktime = bpf_ktime_get_ns();
	__builtin_memcpy(e->name, name, sizeof(name));
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rc_lw_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct rc_lw_event *e;
	struct rc_lw_key k;
	__u8 one = 1;

	key_of(BPF_CORE_READ(bprm, file, f_inode), &k);
	if (bpf_map_lookup_elem(&rc_exec_seen, &k))
		return 0;
	/* Reported once per inode: only the process that inserts it. */
	if (bpf_map_update_elem(&rc_exec_seen, &k, &one, BPF_NOEXIST))
		return 0;
	e = bpf_ringbuf_reserve(&rc_lw_ring, sizeof(*e), 0);
	if (!e) {
		/* Not reported: let a later exec of it try again. */
		bpf_map_delete_elem(&rc_exec_seen, &k);
		lost(0);
		return 0;
	}
	e->kind = RC_LW_EXEC;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->dev = k.dev;
	e->ino = k.ino;
	e->fd = -1;
	e->held = 0;
	e->ktime = bpf_ktime_get_ns();
	__builtin_memset(e->name, 0, sizeof(e->name));
	bpf_probe_read_kernel_str(e->name, sizeof(e->name),
				  BPF_CORE_READ(bprm, file, f_path.dentry, d_name.name));
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
