/*
 * pause: the process that holds a pod sandbox's namespaces open.
 *
 * It sleeps until SIGINT or SIGTERM and then exits 0. Because it is PID 1 of
 * the pod when the pod shares one PID namespace, orphans are re-parented to it:
 * it reaps every exited child on SIGCHLD so none stays a zombie.
 *
 * A PID namespace's init only receives the signals it has a handler for, so
 * each one gets a (trivial) handler. The signals stay blocked except inside
 * sigsuspend(), so none can arrive between the checks and the wait.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }
static void on_child(int sig) { (void)sig; }

static int handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP : 0;
  return sigaction(sig, &sa, NULL);
}

static void reap(void) {
  /* WNOHANG: several children may have exited behind one SIGCHLD. */
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    puts("pause (sriov-dra dev image) 1.0");
    return 0;
  }
  sigset_t blocked, waiting;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &blocked, &waiting) != 0 || handle(SIGINT, on_stop) != 0 ||
      handle(SIGTERM, on_stop) != 0 || handle(SIGCHLD, on_child) != 0) {
    fprintf(stderr, "pause: signal setup: %s\n", strerror(errno));
    return 1;
  }
  sigdelset(&waiting, SIGINT);
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGCHLD);
  for (;;) {
    reap();
    if (stop_signal) {
      fprintf(stderr, "pause: signal %d, exiting\n", (int)stop_signal);
      return 0;
    }
    sigsuspend(&waiting); /* returns -1/EINTR after a handler ran */
  }
}
