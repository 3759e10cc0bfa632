// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * nss.bpf.c — NSS/NSPR plaintext (libnspr4.so), TLS sockets only.
 *
 * Hooks (see ebpf/README.md and shared/spec/MODULES.md §2):
 *  - uprobe + uretprobe on PR_Write, PR_Send (sent) and PR_Read, PR_Recv
 *    (received), libnspr4's trampolines into the top layer's methods: at
 *    entry the PRFileDesc is checked to be an SSL-layered TCP socket (below)
 *    and the buffer and OS fd are saved per thread (rc_calls.bpf.h); at
 *    return, when the call moved bytes (PRInt32 return > 0), those bytes are
 *    emitted as struct rc_data records of kind RC_KIND_NSS_DATA;
 *  - uprobe + uretprobe on PR_Writev (selfserv sends its replies with it):
 *    the vector is saved at entry and, at return, its first `return value`
 *    bytes are emitted as ONE call (rc_iov.bpf.h).
 *
 * NSPR is also every NSS program's file and terminal I/O (tstclnt reads
 * stdin with PR_Read and writes stdout with PR_Write): only descriptors
 * whose top layer is a layered one with a non-zero identity and whose
 * bottom layer (identity 0, PR_NSPR_IO_LAYER) is a TCP socket are captured.
 * The SSL layer gets its identity at run time (PR_GetUniqueIdentity("SSL")),
 * so the identity's value is not checked. The SSL layer calls the lower
 * layer's methods directly, not PR_*, so one application call is one hit.
 *
 * The OS fd is the bottom layer's secret->md.osfd, as PR_FileDesc2NativeHandle
 * reads it; it is always known at entry, so the module needs no syscall hook.
 *
 * Layouts (NSPR 4, stable since 4.0): PRFileDesc = {methods @0, secret @8,
 * lower @16, higher @24, dtor @32, identity (PRDescIdentity, int32) @40};
 * PRIOMethods.file_type is its first int (2 = PR_DESC_SOCKET_TCP,
 * 4 = PR_DESC_LAYERED); PRFilePrivate.md.osfd @0x1c; PRIOVec =
 * {char *iov_base @0, int iov_len @8}, stride 16, at most 16 entries.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_calls.bpf.h"
#include "rc_iov.bpf.h"

#define PR_DESC_SOCKET_TCP 2
#define PR_DESC_LAYERED 4
#define PR_NSPR_IO_LAYER 0
#define PR_FILE_PRIVATE_OSFD_OFF 0x1c
/* Layers walked below the top one at most (SSL over TCP is one). */
#define NSS_MAX_LAYERS 8

/* The first 48 bytes of a PRFileDesc. */
struct pr_file_desc {
	__u64 methods;
	__u64 secret;
	__u64 lower;
	__u64 higher;
	__u64 dtor;
	__s32 identity;
	__u32 _pad;
};

/* The file_type of a method table, -1 if unreadable. */
static __always_inline __s32 methods_file_type(__u64 methods)
{
	__s32 file_type = -1;

	if (!methods || bpf_probe_read_user(&file_type, sizeof(file_type), (void *)methods))
		return -1;
	return file_type;
}

/*
 * Whether the PRFileDesc at user address fd is a TLS socket: a layered top
 * layer with an identity (the SSL layer, or a layer pushed over it) above a
 * TCP socket of NSPR's own layer. *osfd is that socket's OS fd (-1 if it
 * cannot be read).
 */
static __always_inline bool tls_socket(__u64 fd, __s32 *osfd)
{
	struct pr_file_desc d;
	__u64 lower;
	int i;

	if (!fd || bpf_probe_read_user(&d, sizeof(d), (void *)fd))
		return false;
	if (d.identity == PR_NSPR_IO_LAYER || methods_file_type(d.methods) != PR_DESC_LAYERED)
		return false;
	for (i = 0; i < NSS_MAX_LAYERS; i++) {
		lower = d.lower;
		if (!lower || bpf_probe_read_user(&d, sizeof(d), (void *)lower))
			return false;
		if (d.identity != PR_NSPR_IO_LAYER)
			continue;
		if (methods_file_type(d.methods) != PR_DESC_SOCKET_TCP)
			return false;
		if (!d.secret || bpf_probe_read_user(osfd, sizeof(*osfd),
						     (void *)(d.secret + PR_FILE_PRIVATE_OSFD_OFF)) ||
		    *osfd < 0)
			*osfd = -1;
		return true;
	}
	return false;
}

static __always_inline int on_entry(__u64 fd, __u64 buf, __u8 direction, __u32 iov_cnt)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__s32 osfd = -1;

	if (!rc_filter_pass(pid_tgid))
		return 0;
	if (!tls_socket(fd, &osfd))
		return 0;
	/* NULL (no slot) is counted lost by rc_call_enter. */
	rc_call_enter(pid_tgid, fd, buf, 0, osfd, direction, iov_cnt);
	return 0;
}

static __always_inline int on_return(struct pt_regs *ctx, bool vector)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	/* PRInt32: bytes moved, 0 = EOF, -1 = error (often PR_WOULD_BLOCK_ERROR). */
	int ret = (int)PT_REGS_RC(ctx);
	struct rc_call call;

	if (!rc_call_exit(pid_tgid, &call))
		return 0;
	if (ret <= 0)
		return 0;
	if (vector)
		rc_emit_iov(pid_tgid, RC_KIND_NSS_DATA, call.direction, call.fd, call.buf, call.aux,
			    (__u32)ret);
	else
		rc_emit_data(pid_tgid, RC_KIND_NSS_DATA, call.direction, call.fd, call.buf,
			     (__u32)ret);
	return 0;
}

/* PR_Write(PRFileDesc *fd, const void *buf, PRInt32 amount) */
SEC("uprobe")
int BPF_KPROBE(rc_pr_write_entry, void *fd, const void *buf, int amount)
{
	return on_entry((__u64)fd, (__u64)buf, RC_DIR_SEND, 0);
}

SEC("uretprobe")
int rc_pr_write_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

/* PR_Send(fd, buf, amount, PRIntn flags, PRIntervalTime timeout) */
SEC("uprobe")
int BPF_KPROBE(rc_pr_send_entry, void *fd, const void *buf, int amount)
{
	return on_entry((__u64)fd, (__u64)buf, RC_DIR_SEND, 0);
}

SEC("uretprobe")
int rc_pr_send_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

/* PR_Read(PRFileDesc *fd, void *buf, PRInt32 amount) */
SEC("uprobe")
int BPF_KPROBE(rc_pr_read_entry, void *fd, void *buf, int amount)
{
	return on_entry((__u64)fd, (__u64)buf, RC_DIR_RECV, 0);
}

SEC("uretprobe")
int rc_pr_read_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

/* PR_Recv(fd, buf, amount, PRIntn flags, PRIntervalTime timeout) */
SEC("uprobe")
int BPF_KPROBE(rc_pr_recv_entry, void *fd, void *buf, int amount)
{
	return on_entry((__u64)fd, (__u64)buf, RC_DIR_RECV, 0);
}

SEC("uretprobe")
int rc_pr_recv_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

/* PR_Writev(fd, const PRIOVec *iov, PRInt32 iov_size, PRIntervalTime timeout);
 * more than RC_IOV_MAX (PR_MAX_IOVECTOR_SIZE) entries fail without I/O. */
SEC("uprobe")
int BPF_KPROBE(rc_pr_writev_entry, void *fd, const void *iov, int iov_size)
{
	if (iov_size <= 0 || iov_size > RC_IOV_MAX)
		return 0;
	return on_entry((__u64)fd, (__u64)iov, RC_DIR_SEND, (__u32)iov_size);
}

SEC("uretprobe")
int rc_pr_writev_return(struct pt_regs *ctx)
{
	return on_return(ctx, true);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
