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
 *   steal       attacks the daemon's files and its siblings, with
 *               "dir=DATA_DIR;dev=DEVICE" (a device its config lets it
 *               write), and reports each result (fd or 1 on success,
 *               -errno on refusal) as records:
 *                 channel 0: open(DIR/admin.token, O_RDONLY)
 *                 channel 1: open(DIR/key.pem, O_RDONLY)
 *                 channel 2: open(DIR/tokens.json, O_RDWR)
 *                 channel 3: a shared writable mmap of DIR/tokens.json, one
 *                            byte written back unchanged (1)
 *                 channel 4: open(DIR/history.db-shm, O_RDWR)
 *                 channel 5: how many other processes' /proc/PID/mem it
 *                            opened read-write (PIDs within 256 of its own)
 *                 channel 6..9: F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW
 *                            write locks on DEVICE
 *                 channel 10: open(DEVICE, O_RDWR)
 *                 channel 11: open("/etc/passwd", O_RDONLY)
 *                 channel 12: open("/proc/self/status", O_RDONLY)
 *                 channel 13: bytes of DIR/admin.token it could read
 *   future      stamps its readings ten years ahead of the clock
 *   chatter     writes heartbeat frames straight to the host's pipe (fd 1),
 *               a thousand per read, as a driver that took over its host
 *               could, and reports nothing
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sensegate_driver.h"

enum mode { OK, SEGV, OVERCLAIM, GARBAGE, RAGGED, OVERRUN, ERROR, HANG, SPIN, LEAK, PROBE, STEAL, FUTURE, CHATTER };

struct sg_driver {
    enum mode mode;
    uint64_t after;
    uint64_t reads;
    uint64_t leak_mb;
    uint64_t period_ms;
    char dir[1024];
    char dev[1024];
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
                 {"leak", LEAK},   {"probe", PROBE},   {"steal", STEAL},
                 {"future", FUTURE}, {"chatter", CHATTER}};
    if (config_len > SG_CONFIG_MAX) return SG_E_INVALID_CONFIG;
    if (sg_config_is(config, config_len, "mode", "abort_open")) abort();
    if (sg_config_is(config, config_len, "mode", "null_open")) return 0;
    struct sg_driver d = {.mode = OK, .after = 0, .reads = 0, .leak_mb = 16, .period_ms = 50,
                          .dir = "", .dev = ""};
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
        sg_config_u64(config, config_len, "period_ms", 10000, &d.period_ms) < 0 ||
        sg_config_str(config, config_len, "dir", d.dir, sizeof d.dir) < 0 ||
        sg_config_str(config, config_len, "dev", d.dev, sizeof d.dev) < 0)
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

static double open_result(const char *dir, const char *file, int flags) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, flags);
    if (fd < 0) return -errno;
    close(fd);
    return fd;
}

static double map_and_write(const char *dir, const char *file) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDWR);
    if (fd < 0) return -errno;
    uint8_t *p = mmap(NULL, 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) return -err;
    p[0] = p[0]; /* a store through the shared mapping, the byte unchanged */
    munmap(p, 1);
    return 1;
}

static double lock_result(int fd, int cmd) {
    if (fd < 0) return -EBADF;
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0};
    if (fcntl(fd, cmd, &lk) != 0) return -errno;
    lk.l_type = F_UNLCK;
    fcntl(fd, cmd == F_OFD_SETLKW ? F_OFD_SETLK : (cmd == F_SETLKW ? F_SETLK : cmd), &lk);
    return 0;
}

static int32_t steal(const struct sg_driver *d, uint8_t *buf, size_t capacity) {
    double results[14];
    results[0] = open_result(d->dir, "admin.token", O_RDONLY);
    results[1] = open_result(d->dir, "key.pem", O_RDONLY);
    results[2] = open_result(d->dir, "tokens.json", O_RDWR);
    results[3] = map_and_write(d->dir, "tokens.json");
    results[4] = open_result(d->dir, "history.db-shm", O_RDWR);
    int mems = 0;
    int self = (int)getpid();
    for (int pid = self - 256; pid <= self + 256; pid++) {
        if (pid <= 1 || pid == self) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/mem", pid);
        int fd = open(path, O_RDWR);
        if (fd >= 0) {
            mems++;
            close(fd);
        }
    }
    results[5] = mems;
    int dev = open(d->dev, O_RDWR);
    results[10] = dev >= 0 ? dev : -errno;
    results[6] = lock_result(dev, F_SETLK);
    results[7] = lock_result(dev, F_SETLKW);
    results[8] = lock_result(dev, F_OFD_SETLK);
    results[9] = lock_result(dev, F_OFD_SETLKW);
    if (dev >= 0) close(dev);
    int pw = open("/etc/passwd", O_RDONLY);
    results[11] = pw >= 0 ? pw : -errno;
    if (pw >= 0) close(pw);
    int st = open("/proc/self/status", O_RDONLY);
    results[12] = st >= 0 ? st : -errno;
    if (st >= 0) close(st);
    char path[2048];
    snprintf(path, sizeof path, "%s/admin.token", d->dir);
    int tf = open(path, O_RDONLY);
    ssize_t got = 0;
    if (tf >= 0) {
        char secret[256];
        got = read(tf, secret, sizeof secret);
        close(tf);
    }
    results[13] = got > 0 ? (double)got : 0;
    if (capacity < 14 * SG_RECORD_SIZE) return SG_E_INTERNAL;
    int64_t ts = now_us();
    for (uint32_t c = 0; c < 14; c++) sg_put_record(buf + c * SG_RECORD_SIZE, c, 0, ts, results[c]);
    return 14 * SG_RECORD_SIZE;
}

int32_t sg_driver_read(struct sg_driver *d, uint8_t *buf, size_t capacity) {
    if (d == NULL || buf == NULL || capacity < SG_RECORD_SIZE) return SG_E_INTERNAL;
    if (capacity > SG_READ_CAPACITY) capacity = SG_READ_CAPACITY;
    if (d->mode == PROBE) {
        sleep_ms(50);
        return probe(buf, capacity);
    }
    if (d->mode == STEAL) {
        sleep_ms(50);
        return steal(d, buf, capacity);
    }
    if (d->mode == CHATTER) {
        /* A frame: 4-byte little-endian length 2, then HostEvent with an
         * empty heartbeat (field 3, length 0). */
        static const uint8_t beat[6] = {2, 0, 0, 0, 0x1a, 0};
        uint8_t burst[100 * sizeof beat];
        for (size_t i = 0; i < 100; i++) memcpy(burst + i * sizeof beat, beat, sizeof beat);
        for (int i = 0; i < 10; i++) {
            if (write(1, burst, sizeof burst) < 0) break;
        }
        sleep_ms(1);
        return 0;
    }
    if (d->mode == FUTURE) {
        sleep_ms((long)d->period_ms);
        /* Ten years of 365.25 days. */
        sg_put_record(buf, 0, SG_QUALITY_GOOD, now_us() + 315576000000000LL, 99.0);
        return SG_RECORD_SIZE;
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
