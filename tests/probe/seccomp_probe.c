/* Tries one thing a container's seccomp profile should refuse, and says
 * what the kernel answered: "allowed", or "refused ERRNO". Built static by
 * tests/test_seccomp.py and run inside containers.
 *
 *   seccomp_probe ATTACK   keyctl add_key bpf perf_event_open userfaultfd
 *                          unshare_user clone_user mount_proc ptrace
 *                          personality x32_keyctl x32_getpid i386_keyctl
 *                          x32_unshare_user i386_getpid i386_unshare_user
 *                          getpid mkdir personality_query
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/perf_event.h>

#define X32_BIT 0x40000000L

static int report(long ret)
{
	if (ret < 0) {
		printf("refused %d\n", errno);
		return 1;
	}
	printf("allowed\n");
	return 0;
}

/* A system call through the i386 entry point, as a 32-bit program makes
 * it: the filter sees AUDIT_ARCH_I386 and i386's numbers. */
static long int80(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
	if (ret < 0 && ret > -4096) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: seccomp_probe ATTACK\n");
		return 2;
	}
	const char *a = argv[1];
	if (!strcmp(a, "getpid")) { /* says so first: a kill is then the call's */
		printf("calling\n");
		fflush(stdout);
		return report(syscall(SYS_getpid));
	}
	if (!strcmp(a, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the user keyring */
		return report(syscall(SYS_keyctl, 0, -4, 0));
	if (!strcmp(a, "add_key"))
		return report(syscall(SYS_add_key, "user", "probe", "v", 1, -2));
	if (!strcmp(a, "bpf")) { /* BPF_MAP_CREATE with an empty attribute */
		char attr[128] = {0};
		return report(syscall(SYS_bpf, 0, attr, sizeof(attr)));
	}
	if (!strcmp(a, "perf_event_open")) {
		struct perf_event_attr pe = {0};
		pe.type = PERF_TYPE_SOFTWARE;
		pe.size = sizeof(pe);
		pe.config = PERF_COUNT_SW_CPU_CLOCK;
		pe.exclude_kernel = 1;
		return report(syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
	}
	if (!strcmp(a, "userfaultfd"))
		return report(syscall(SYS_userfaultfd, 0));
	if (!strcmp(a, "unshare_user"))
		return report(unshare(CLONE_NEWUSER));
	if (!strcmp(a, "clone_user")) {
		long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return report(pid);
	}
	if (!strcmp(a, "mount_proc")) {
		mkdir("/tmp/probe-proc", 0755);
		return report(mount("proc", "/tmp/probe-proc", "proc", 0, NULL));
	}
	if (!strcmp(a, "ptrace")) { /* another process of the container */
		pid_t child = fork();
		if (child == 0) {
			pause();
			_exit(0);
		}
		long ret = ptrace(PTRACE_ATTACH, child, 0, 0);
		int saved = errno;
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		errno = saved;
		return report(ret);
	}
	if (!strcmp(a, "personality")) { /* 32-bit, without ASLR */
		int r = report(personality(PER_LINUX32 | ADDR_NO_RANDOMIZE));
		printf("now %#x\n", personality(0xffffffff));
		return r;
	}
	if (!strcmp(a, "personality_query"))
		return report(personality(0xffffffff));
	if (!strcmp(a, "mkdir"))
		return report(mkdir("/tmp/probe-dir", 0755));
	if (!strcmp(a, "x32_getpid"))
		return report(syscall(X32_BIT | SYS_getpid));
	if (!strcmp(a, "x32_unshare_user"))
		return report(syscall(X32_BIT | SYS_unshare, CLONE_NEWUSER));
	if (!strcmp(a, "x32_keyctl"))
		return report(syscall(X32_BIT | SYS_keyctl, 0, -4, 0));
	if (!strcmp(a, "i386_getpid"))
		return report(int80(20, 0, 0, 0));
	if (!strcmp(a, "i386_keyctl"))
		return report(int80(288, 0, -4, 0));
	if (!strcmp(a, "i386_unshare_user"))
		return report(int80(310, CLONE_NEWUSER, 0, 0));
	fprintf(stderr, "seccomp_probe: unknown attack %s\n", a);
	return 2;
}
