// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * bash.bpf.c — command lines typed into interactive bash, their exit status,
 * and the shell's exit or exec (struct rc_bash, RC_KIND_BASH).
 *
 * Hooks (bash 5.2 has readline linked in; see ebpf/README.md):
 *  - uprobe readline: the shell's parser asks for a line (its prompt argument
 *    is bash's current_readline_prompt; `read -e` and other readline callers
 *    are skipped). If the line before was a complete command
 *    (current_command_line_count == 0 now) whose status is not sent yet, its
 *    status is last_command_exit_value: bash_type 1, with the command;
 *  - uretprobe readline: the line returned, whole (not NULL, at EOF, nor
 *    empty): bash_type 0, retval = the line's index in its command (0 first
 *    line, n the n-th continuation line read with PS2). The command's lines
 *    (joined by \n, up to RC_BASH_CMD_MAX bytes) are kept for its status;
 *  - uprobe exit_shell(int status): the status of the pending command (type
 *    1), then the exit (type 2, retval = the exit status, with the command
 *    that exited, if any);
 *  - uprobe exec_builtin(WORD_LIST *list) with a command (list != NULL):
 *    type 2, retval = last_command_exit_value, with the command.
 * Only processes whose parser read a line through readline (interactive
 * shells) are reported: their state is keyed by pid_tgid and tied to the
 * process image (start time and mm), so a subshell, a script, a reused pid
 * or a program exec'd in place of the shell is not one of them.
 *
 * bash is PIE: at the readline entry PT_REGS_IP is readline's runtime
 * address, so base = ip - readline_addr and a global is at base + its
 * st_value (the `*_addr` globals below, set by user space at load).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_rec64.bpf.h"
#include "rc_str.bpf.h"

/* st_value in bash's .dynsym of readline and of the globals read. */
const volatile __u64 readline_addr = 0;
const volatile __u64 last_command_exit_value_addr = 0;
/* 0 = not in this bash: every line is taken as a whole command. */
const volatile __u64 current_command_line_count_addr = 0;
/* 0 = not in this bash: every readline call is taken as the parser's. */
const volatile __u64 current_readline_prompt_addr = 0;

/* Bytes of a command kept for its status and exit/exec records. */
#define RC_BASH_CMD_MAX 4096

/* One interactive shell (its main thread), by pid_tgid. */
struct rc_shell {
	__u64 start_time; /* task->start_time: a reused pid is another shell */
	__u64 mm;         /* task->mm: an exec replaces it */
	__u64 base;       /* load bias: readline's address − readline_addr */
	__u32 line_index; /* of the readline call in progress */
	__u32 cmd_total;  /* length of the command read last (lines joined by \n) */
	__u32 cmd_len;    /* bytes of it in cmd (at most RC_BASH_CMD_MAX) */
	__u8 reading;     /* between the parser's readline entry and its return */
	__u8 pending;     /* a command was read, its status not sent yet */
	__u8 _pad[2];
	/* The status / exit record, built in place: its payload is cmd. */
	struct rc_bash rec;
	/* Twice the size kept: a read of RC_BASH_CMD_MAX bytes at an offset
	 * below RC_BASH_CMD_MAX stays inside (what the verifier checks). */
	__u8 cmd[2 * RC_BASH_CMD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct rc_shell);
} rc_shells SEC(".maps");

/* All zeros: the initial value of a new shell (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_shell);
} rc_shell_zero SEC(".maps");

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The shell state of this thread if it belongs to the current process image. */
static __always_inline struct rc_shell *rc_shell_of(__u64 pid_tgid, struct task_struct *task)
{
	struct rc_shell *sh = bpf_map_lookup_elem(&rc_shells, &pid_tgid);

	if (!sh || sh->start_time != task->start_time || sh->mm != (__u64)task->mm)
		return NULL;
	return sh;
}

/* The current thread's shell, if the live filter passes and it is one. */
static __always_inline struct rc_shell *rc_shell_current(__u64 pid_tgid)
{
	if (!rc_filter_pass(pid_tgid))
		return NULL;
	return rc_shell_of(pid_tgid, bpf_get_current_task_btf());
}

/*
 * A status (type 1) or exit/exec (type 2) record of the shell, with the
 * command read last as payload when with_cmd (its cut, beyond
 * RC_BASH_CMD_MAX or max_payload, shows in total_len).
 */
static __always_inline void rc_bash_emit(struct rc_shell *sh, __u64 pid_tgid, __u32 type,
					 __s32 retval, bool with_cmd)
{
	__u32 len = with_cmd ? sh->cmd_len : 0;

	if (len > RC_BASH_CMD_MAX)
		len = RC_BASH_CMD_MAX;
	if (len > max_payload)
		len = max_payload;
	rc_fill_hdr(&sh->rec.hdr, RC_KIND_BASH, pid_tgid);
	sh->rec.hdr.flags = RC_F_FIRST | RC_F_LAST;
	sh->rec.chunk.total_len = with_cmd ? sh->cmd_total : 0;
	sh->rec.chunk.offset = 0;
	sh->rec.chunk.len = len;
	sh->rec.chunk.call_seq = rc_next_call_seq();
	sh->rec.bash_type = type;
	sh->rec.retval = retval;
	rc_output(rc_ring(), &sh->rec, sizeof(sh->rec) + len, len);
}

/* Adds a line of line_len bytes to the command kept (a new one at line 0). */
static __always_inline void rc_bash_keep_line(struct rc_shell *sh, __u64 line, __u32 line_len)
{
	__u32 off, kept;
	long n;

	if (sh->line_index == 0) {
		sh->cmd_total = 0;
		sh->cmd_len = 0;
	} else {
		sh->cmd_total++;
		if (sh->cmd_len < RC_BASH_CMD_MAX) {
			sh->cmd[sh->cmd_len & (RC_BASH_CMD_MAX - 1)] = '\n';
			sh->cmd_len++;
		}
	}
	sh->cmd_total += line_len;
	if (sh->cmd_len >= RC_BASH_CMD_MAX)
		return;
	off = sh->cmd_len & (RC_BASH_CMD_MAX - 1);
	/* + 1: the NUL, so that a whole RC_BASH_CMD_MAX bytes can be kept */
	n = bpf_probe_read_user_str(&sh->cmd[off], RC_BASH_CMD_MAX + 1, (void *)line);
	if (n <= 1)
		return;
	kept = (__u32)n - 1;
	if (kept > RC_BASH_CMD_MAX - off)
		kept = RC_BASH_CMD_MAX - off;
	sh->cmd_len = off + kept;
}

/* last_command_exit_value of the shell; false if unreadable (counted as lost). */
static __always_inline bool rc_bash_status(const struct rc_shell *sh, __s32 *status)
{
	if (bpf_probe_read_user(status, sizeof(*status),
				(void *)(sh->base + last_command_exit_value_addr)) == 0)
		return true;
	rc_count_lost(0);
	return false;
}

SEC("uprobe")
int rc_bash_readline_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct rc_shell *sh, *fresh;
	__u64 base, prompt = 0;
	__u32 zero = 0;
	__s32 count = 0, status;

	if (!rc_filter_pass(pid_tgid))
		return 0;
	base = PT_REGS_IP(ctx) - readline_addr;
	if (current_readline_prompt_addr &&
	    (bpf_probe_read_user(&prompt, sizeof(prompt), (void *)(base + current_readline_prompt_addr)) ||
	     prompt != PT_REGS_PARM1(ctx)))
		return 0; /* not the parser (e.g. `read -e`): not a command line */
	if (current_command_line_count_addr &&
	    bpf_probe_read_user(&count, sizeof(count), (void *)(base + current_command_line_count_addr)))
		count = 0;
	if (count < 0)
		count = 0;

	task = bpf_get_current_task_btf();
	sh = rc_shell_of(pid_tgid, task);
	if (sh) {
		/* A new command starts: the previous one has finished. */
		if (sh->pending && count == 0) {
			sh->pending = 0;
			if (rc_bash_status(sh, &status))
				rc_bash_emit(sh, pid_tgid, RC_BASH_RETVAL, status, true);
		}
	} else {
		fresh = bpf_map_lookup_elem(&rc_shell_zero, &zero);
		if (!fresh || bpf_map_update_elem(&rc_shells, &pid_tgid, fresh, BPF_ANY)) {
			rc_count_lost(0);
			return 0;
		}
		sh = bpf_map_lookup_elem(&rc_shells, &pid_tgid);
		if (!sh) {
			rc_count_lost(0);
			return 0;
		}
		sh->start_time = task->start_time;
		sh->mm = (__u64)task->mm;
	}
	sh->base = base;
	sh->line_index = (__u32)count;
	sh->reading = 1;
	return 0;
}

SEC("uretprobe")
int rc_bash_readline_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct rc_shell *sh;
	struct {
		__u32 bash_type;
		__s32 retval;
	} own;
	__u64 line;
	__u32 len;
	char first;

	sh = rc_shell_current(pid_tgid);
	if (!sh || !sh->reading)
		return 0;
	sh->reading = 0;
	line = PT_REGS_RC(ctx);
	if (!line)
		return 0; /* EOF: exit_shell follows unless ignoreeof */
	if (bpf_probe_read_user(&first, 1, (void *)line) == 0 && first == 0)
		return 0; /* an empty line: bash runs nothing */
	own.bash_type = RC_BASH_READLINE;
	own.retval = (__s32)sh->line_index;
	len = rc_emit_str(pid_tgid, RC_KIND_BASH, &own, line);
	rc_bash_keep_line(sh, line, len);
	sh->pending = 1;
	return 0;
}

SEC("uprobe")
int rc_bash_exit_shell(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct rc_shell *sh;
	__s32 status = (__s32)PT_REGS_PARM1(ctx);

	sh = rc_shell_current(pid_tgid);
	if (!sh)
		return 0;
	/* exit_or_logout set last_command_exit_value to this status. At EOF no
	 * command is pending: the exit carries none. */
	if (sh->pending)
		rc_bash_emit(sh, pid_tgid, RC_BASH_RETVAL, status, true);
	rc_bash_emit(sh, pid_tgid, RC_BASH_EXIT_EXEC, status, sh->pending);
	bpf_map_delete_elem(&rc_shells, &pid_tgid);
	return 0;
}

SEC("uprobe")
int rc_bash_exec_builtin(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct rc_shell *sh;
	__s32 status;

	sh = rc_shell_current(pid_tgid);
	if (!sh || !PT_REGS_PARM1(ctx))
		return 0; /* not a shell, or `exec` with redirections only: the shell stays */
	/* The line stays pending: if exec fails the shell goes on and the next
	 * prompt sends its status (126, 127); if it succeeds the new image has
	 * another mm and this state is never used again. */
	if (rc_bash_status(sh, &status))
		rc_bash_emit(sh, pid_tgid, RC_BASH_EXIT_EXEC, status, true);
	return 0;
}
