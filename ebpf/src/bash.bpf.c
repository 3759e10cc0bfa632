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
 *    status is last_command_exit_value: bash_type 1;
 *  - uretprobe readline: the line returned, whole (not NULL, at EOF, nor
 *    empty): bash_type 0, retval = the line's index in its command (0 first
 *    line, n the n-th continuation line read with PS2);
 *  - uprobe exit_shell(int status): the status of the pending line (type 1),
 *    then the exit (type 2, retval = the exit status);
 *  - uprobe exec_builtin(WORD_LIST *list) with a command (list != NULL):
 *    type 2, retval = last_command_exit_value.
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
#include "rc_str.bpf.h"

/* st_value in bash's .dynsym of readline and of the globals read. */
const volatile __u64 readline_addr = 0;
const volatile __u64 last_command_exit_value_addr = 0;
/* 0 = not in this bash: every line is taken as a whole command. */
const volatile __u64 current_command_line_count_addr = 0;
/* 0 = not in this bash: every readline call is taken as the parser's. */
const volatile __u64 current_readline_prompt_addr = 0;

/* One interactive shell (its main thread), by pid_tgid. */
struct rc_shell {
	__u64 start_time; /* task->start_time: a reused pid is another shell */
	__u64 mm;         /* task->mm: an exec replaces it */
	__u64 base;       /* load bias: readline's address − readline_addr */
	__u32 line_index; /* of the readline call in progress */
	__u8 reading;     /* between the parser's readline entry and its return */
	__u8 pending;     /* a line was sent, its command's status not yet */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct rc_shell);
} rc_shells SEC(".maps");

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

static __always_inline void rc_bash_emit(__u64 pid_tgid, __u32 type, __s32 retval, __u64 line)
{
	rc_emit_str(pid_tgid, RC_KIND_BASH, type, (__u32)retval, line);
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
	struct rc_shell *sh, fresh = {};
	__u64 base, prompt = 0;
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
				rc_bash_emit(pid_tgid, RC_BASH_RETVAL, status, 0);
		}
	} else {
		fresh.start_time = task->start_time;
		fresh.mm = (__u64)task->mm;
		bpf_map_update_elem(&rc_shells, &pid_tgid, &fresh, BPF_ANY);
		sh = bpf_map_lookup_elem(&rc_shells, &pid_tgid);
		if (!sh) {
			rc_count_lost(0);
			return 0;
		}
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
	__u64 line;
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
	rc_bash_emit(pid_tgid, RC_BASH_READLINE, (__s32)sh->line_index, line);
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
	/* exit_or_logout set last_command_exit_value to this status. */
	if (sh->pending)
		rc_bash_emit(pid_tgid, RC_BASH_RETVAL, status, 0);
	rc_bash_emit(pid_tgid, RC_BASH_EXIT_EXEC, status, 0);
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
		rc_bash_emit(pid_tgid, RC_BASH_EXIT_EXEC, status, 0);
	return 0;
}
