/*
 * A deliberately faulty driver, for testing that the host contains C faults.
 * Never use it for anything else.
 *
 * Config: "mode=M;after=N;leak_mb=K;period_ms=P". For the first N reads
 * (default 0) it behaves: one good record on channel 0 per read, one read
 * every P ms (default 50). Then, by mode:
 *   ok          keeps behaving
 *   segv        writes through a null pointer
 *   overclaim   returns more bytes than the capacity it was given
 *   garbage     writes records with out-of-range fields
 *   ragged      returns a length that is not a whole number of records
 *   overrun     writes 16 bytes past the capacity it was given
 *   error       returns SG_E_IO
 *   hang        never returns (sleeps forever)
 *   spin        never returns (burns CPU)
 *   leak        allocates and touches K MiB per read (default 16), never frees;
 *               returns SG_E_INTERNAL once allocation fails
 *   abort_open  calls abort() in sg_driver_open
 *   null_open   returns success from sg_driver_open without a handle
 *   probe       reports what the sandbox allows, as records:
 *                 channel 0: socket(AF_INET) result (fd, or -errno)
 *                 channel 1: execve("/bin/true") result (-errno)
 *                 channel 2: number of open descriptors
 *                 channel 3: 1 if every open descriptor is a pipe, else 0
 *                 channel 4: fork() result (-errno; a child exits at once)
 *                 channel 5: socket(AF_UNIX) result (fd, or -errno)
 *                 channel 6: how many more files it could open (up to 4096)
 *                 channel 7: fcntl(1, F_SETOWN, parent) result (-errno)
 *                 channel 8: ioctl(1, FIOASYNC) result (-errno)
 *                 channel 9: open(O_CREAT) of a new file in /tmp (fd, or -errno)
 *                 channel 10: ioctl(1, FIOASYNC) with high bits set in the
 *                             request (-errno)
 *                 channel 11: fcntl(1, F_SETOWN) with high bits set (-errno)
 *               and channel 3 is 1 when every descriptor is a pipe or
 *               /dev/null.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sensegate_driver.h"

enum mode { OK, SEGV, OVERCLAIM, GARBAGE, RAGGED, OVERRUN, ERROR, HANG, SPIN, LEAK, PROBE };

struct sg_driver {
    enum mode mode;
    uint64_t after;
    uint64_t reads;
    uint64_t leak_mb;
    uint64_t period_ms;
};

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint32_t sg_driver_abi_version(void) { return SG_DRIVER_ABI_VERSION; }

int32_t sg_driver_open(const uint8_t *config, size_t config_len, struct sg_driver **out) {
    static const struct {
        const char *name;
        enum mode mode;
    } modes[] = {{"ok", OK},       {"segv", SEGV},     {"overclaim", OVERCLAIM},
                 {"garbage", GARBAGE}, {"ragged", RAGGED}, {"overrun", OVERRUN},
                 {"error", ERROR}, {"hang", HANG},     {"spin", SPIN},
                 {"leak", LEAK},   {"probe", PROBE}};
    if (config_len > SG_CONFIG_MAX) return SG_E_INVALID_CONFIG;
    if (sg_config_is(config, config_len, "mode", "abort_open")) abort();
    if (sg_config_is(config, config_len, "mode", "null_open")) return 0;
    struct sg_driver d = {.mode = OK, .after = 0, .reads = 0, .leak_mb = 16, .period_ms = 50};
    int found = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (sg_config_is(config, config_len, "mode", modes[i].name)) {
            d.mode = modes[i].mode;
            found = 1;
        }
    }
    if (!found) return SG_E_INVALID_CONFIG;
    if (sg_config_u64(config, config_len, "after", 1000000, &d.after) < 0 ||
        sg_config_u64(config, config_len, "leak_mb", 1024, &d.leak_mb) < 0 ||
        sg_config_u64(config, config_len, "period_ms", 10000, &d.period_ms) < 0)
        return SG_E_INVALID_CONFIG;
    struct sg_driver *h = malloc(sizeof *h);
    if (h == NULL) return SG_E_INTERNAL;
    *h = d;
    *out = h;
    return 0;
}

static int32_t probe(uint8_t *buf, size_t capacity) {
    double results[12];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    results[0] = fd >= 0 ? fd : -errno;
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {NULL};
    execve("/bin/true", argv, envp);
    results[1] = -errno;
    int count = 0, all_pipes = 1;
    DIR *dir = opendir("/proc/self/fd");
    if (dir != NULL) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.') continue;
            int n = atoi(e->d_name);
            if (n == dirfd(dir)) continue;
            count++;
            char path[64], target[128];
            snprintf(path, sizeof path, "/proc/self/fd/%d", n);
            ssize_t len = readlink(path, target, sizeof target - 1);
            int is_pipe = len >= 5 && memcmp(target, "pipe:", 5) == 0;
            int is_null = len == 9 && memcmp(target, "/dev/null", 9) == 0;
            if (!is_pipe && !is_null) all_pipes = 0;
        }
        closedir(dir);
    } else {
        count = -errno;
    }
    results[2] = count;
    results[3] = all_pipes;
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    results[4] = pid > 0 ? pid : -errno;
    int ufd = socket(AF_UNIX, SOCK_STREAM, 0);
    results[5] = ufd >= 0 ? ufd : -errno;
    static int opened[4096];
    int more = 0;
    while (more < 4096 && (opened[more] = open("/dev/null", O_RDONLY)) >= 0) more++;
    for (int i = 0; i < more; i++) close(opened[i]);
    results[6] = more;
    results[7] = fcntl(1, F_SETOWN, getppid()) == 0 ? 0 : -errno;
    int on = 1;
    results[8] = ioctl(1, FIOASYNC, &on) == 0 ? 0 : -errno;
    char made[64];
    snprintf(made, sizeof made, "/tmp/sg-probe-%d", (int)getpid());
    int cfd = open(made, O_CREAT | O_WRONLY, 0600);
    results[9] = cfd >= 0 ? cfd : -errno;
    if (cfd >= 0) close(cfd);
    /* The kernel ignores the upper half of these requests. */
    results[10] = syscall(SYS_ioctl, 1, 0x100000000UL | FIOASYNC, &on) == 0 ? 0 : -errno;
    results[11] = syscall(SYS_fcntl, 1, 0x100000000UL | F_SETOWN, (long)getppid()) == 0 ? 0 : -errno;
    if (capacity < 12 * SG_RECORD_SIZE) return SG_E_INTERNAL;
    int64_t ts = now_us();
    for (uint32_t c = 0; c < 12; c++) sg_put_record(buf + c * SG_RECORD_SIZE, c, 0, ts, results[c]);
    return 12 * SG_RECORD_SIZE;
}

int32_t sg_driver_read(struct sg_driver *d, uint8_t *buf, size_t capacity) {
    if (d == NULL || buf == NULL || capacity < SG_RECORD_SIZE) return SG_E_INTERNAL;
    if (capacity > SG_READ_CAPACITY) capacity = SG_READ_CAPACITY;
    if (d->mode == PROBE) {
        sleep_ms(50);
        return probe(buf, capacity);
    }
    if (d->mode == OK || d->reads < d->after) {
        d->reads++;
        if (d->period_ms) sleep_ms((long)d->period_ms);
        sg_put_record(buf, 0, SG_QUALITY_GOOD, now_us(), (double)d->reads);
        return SG_RECORD_SIZE;
    }
    switch (d->mode) {
    case SEGV: {
        volatile uint8_t *p = NULL;
        *p = 1;
        return 0;
    }
    case OVERCLAIM:
        return (int32_t)(capacity + SG_RECORD_SIZE);
    case GARBAGE:
        sg_put_record(buf, 0xFFFFFFFFu, 7, -5, 1.0);
        return SG_RECORD_SIZE;
    case RAGGED:
        sg_put_record(buf, 0, 0, now_us(), 1.0);
        return SG_RECORD_SIZE - 1;
    case OVERRUN:
        memset(buf, 0xAB, capacity + 16);
        return 0;
    case ERROR:
        return SG_E_IO;
    case HANG:
        for (;;) sleep_ms(1000);
    case SPIN:
        for (volatile uint64_t i = 0;; i++) {
        }
    case LEAK: {
        size_t bytes = (size_t)d->leak_mb << 20;
        uint8_t *p = malloc(bytes);
        if (p == NULL) return SG_E_INTERNAL;
        memset(p, 1, bytes);
        d->reads++;
        if (d->period_ms) sleep_ms((long)d->period_ms);
        sg_put_record(buf, 0, SG_QUALITY_GOOD, now_us(), (double)d->reads);
        return SG_RECORD_SIZE;
    }
    default:
        return SG_E_INTERNAL;
    }
}

void sg_driver_close(struct sg_driver *d) { free(d); }
