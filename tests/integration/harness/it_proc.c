/*
 * it_proc.c - child processes for integration tests: start with an exact
 * environment, log to a file, wait for a log line, signal, reap.
 */
#include "it.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IT_MAX_PROCS 32

struct it_proc {
	pid_t pid;
	int   status; /* exit code once reaped, else -1 */
	char  log[512];
};

static it_proc *all_procs[IT_MAX_PROCS];

static void
remember(it_proc *p)
{
	for (int i = 0; i < IT_MAX_PROCS; i++) {
		if (all_procs[i] == NULL) {
			all_procs[i] = p;
			return;
		}
	}
}

static void
forget(it_proc *p)
{
	for (int i = 0; i < IT_MAX_PROCS; i++)
		if (all_procs[i] == p)
			all_procs[i] = NULL;
}

/* Our env plus PATH and the sanitizer settings ctest gave us; entries from
 * *owned on are ours to free. */
static char **
child_env(char *const env[], size_t *owned)
{
	static const char *pass[] = {
	    "PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LANG"};
	size_t n = 0, i = 0;
	char **out;

	while (env && env[n])
		n++;
	out = ash_xcalloc(n + 6, sizeof(char *));
	for (; i < n; i++)
		out[i] = env[i];
	*owned = n;
	for (size_t k = 0; k < sizeof(pass) / sizeof(pass[0]); k++) {
		const char *v = getenv(pass[k]);
		if (v != NULL)
			out[i++] = ash_xasprintf("%s=%s", pass[k], v);
	}
	return out;
}

it_proc *
it_proc_start(char *const argv[], char *const env[], const char *log)
{
	it_proc *p = ash_xcalloc(1, sizeof(*p));
	size_t   owned;
	char   **e = child_env(env, &owned);

	p->status = -1;
	snprintf(p->log, sizeof(p->log), "%s", log);
	/* Truncate before forking: the caller may read the log at once and
	 * must never see an earlier run's lines. */
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ASH_T_TRUE(fd >= 0);
	p->pid = fork();
	if (p->pid == 0) {
		/* If the test process dies (crash, ctest timeout), so do we.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		execve(argv[0], argv, e);
		fprintf(stderr, "execve %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	for (size_t i = owned; e[i] != NULL; i++)
		free(e[i]);
	free(e);
	ASH_T_TRUE(p->pid > 0);
	remember(p);
	return p;
}

/* A log not written yet reads as empty. */
static char *
read_log(const char *path)
{
	size_t n;

	return access(path, R_OK) == 0 ? it_read_file(path, &n)
	                               : ash_xstrdup("");
}

bool
it_proc_log_has(it_proc *p, const char *needle)
{
	char *s  = read_log(p->log);
	bool  ok = strstr(s, needle) != NULL;

	free(s);
	return ok;
}

const char *
it_proc_tail(it_proc *p)
{
	static char tail[3000];
	char       *s = read_log(p->log);
	size_t      n = strlen(s);

	snprintf(tail, sizeof(tail), "%s",
	    n > sizeof(tail) - 1 ? s + n - (sizeof(tail) - 1) : s);
	free(s);
	return tail;
}

static bool
reap(it_proc *p, int flags)
{
	int st;

	if (p->status >= 0)
		return true;
	if (waitpid(p->pid, &st, flags) != p->pid)
		return false;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return true;
}

void
it_proc_wait_log(it_proc *p, const char *needle, int ms)
{
	for (int waited = 0; waited < ms; waited += 20) {
		if (it_proc_log_has(p, needle))
			return;
		if (reap(p, WNOHANG))
			ASH_T_FAILF("process exited (%d) before \"%s\":\n%s",
			    p->status, needle, it_proc_tail(p));
		usleep(20000);
	}
	ASH_T_FAILF(
	    "no \"%s\" within %d ms:\n%s", needle, ms, it_proc_tail(p));
}

void
it_proc_signal(it_proc *p, int sig)
{
	if (p->status < 0)
		kill(p->pid, sig);
}

int
it_proc_wait(it_proc *p, int ms)
{
	for (int waited = 0; waited <= ms; waited += 10) {
		if (reap(p, WNOHANG))
			return p->status;
		usleep(10000);
	}
	return -1;
}

void
it_proc_free(it_proc *p)
{
	if (p == NULL)
		return;
	if (p->status < 0) {
		kill(p->pid, SIGKILL);
		reap(p, 0);
	}
	forget(p);
	free(p);
}

void
it_procs_kill_all(void)
{
	for (int i = 0; i < IT_MAX_PROCS; i++)
		it_proc_free(all_procs[i]);
}

/* The low end of the kernel's ephemeral range: ports below it are never
 * handed out for port 0 or outgoing connections, so a port we picked is
 * not taken from under us by a service binding 127.0.0.1:0. */
static int
ephemeral_low(void)
{
	FILE *f   = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int   low = 32768, high;

	if (f != NULL) {
		if (fscanf(f, "%d %d", &low, &high) != 2)
			low = 32768;
		fclose(f);
	}
	return low;
}

static bool
port_bindable(int port)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	int                fd = socket(AF_INET, SOCK_STREAM, 0);
	bool               ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port        = htons((uint16_t) port);
	ok                = bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* Ports come in blocks of PORT_BLOCK, one block per test program at a
 * time, claimed with an flock on /tmp/ashoon-it-ports/<block>: parallel
 * test programs (ctest -j, other checkouts) then never pick the same port.
 * The lock goes with the process; the descriptor is close-on-exec so the
 * services we start do not hold it. A port someone else has bound is
 * skipped. */
#define PORT_BLOCK 128
#define PORT_BASE  10000

static int
claim_block(int low, int after)
{
	char path[96];
	int  nblocks = (low - PORT_BASE) / PORT_BLOCK;

	if (mkdir("/tmp/ashoon-it-ports", 0777) == 0)
		chmod("/tmp/ashoon-it-ports", 01777); /* past the umask */
	for (int tries = 0; tries < nblocks; tries++) {
		int b  = (after + 1 + tries) % nblocks;
		int fd = -1;
		snprintf(path, sizeof(path), "/tmp/ashoon-it-ports/%d", b);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
			return b; /* fd stays open: the lock is ours */
		if (fd >= 0)
			close(fd);
	}
	ASH_T_FAILF("no free block of test ports below %d", low);
	return -1;
}

int
it_free_port(void)
{
	static int block = -1, next;
	int        low   = ephemeral_low();

	ASH_T_TRUE(low - PORT_BASE >= 2 * PORT_BLOCK);
	if (block < 0) {
		/* Start the search somewhere random: fewer lock attempts. */
		srandom((unsigned) getpid() ^ (unsigned) time(NULL));
		block = claim_block(
		    low, (int) (random() % ((low - PORT_BASE) / PORT_BLOCK)));
	}
	for (;;) {
		if (next == PORT_BLOCK) {
			block = claim_block(low, block);
			next  = 0;
		}
		int port = PORT_BASE + block * PORT_BLOCK + next++;
		if (port_bindable(port))
			return port;
	}
}

void
it_bin(const char *rel, char *out, size_t cap)
{
	const char *dir = getenv("ASH_BUILD_DIR");

	if (dir == NULL)
		ASH_T_FAILF("ASH_BUILD_DIR is not set: run through ctest");
	snprintf(out, cap, "%s/%s", dir, rel);
	if (access(out, X_OK) != 0)
		ASH_T_FAILF("%s is not built", out);
}
