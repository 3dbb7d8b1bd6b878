/*
 * Exercises the reference drivers through their ABI, loaded with dlopen, for
 * running under AddressSanitizer and UndefinedBehaviorSanitizer
 * (scripts/check-drivers.sh). Every call a well-behaved host may make is made
 * here, with hostile configurations and odd capacities; the faulty driver is
 * driven only in the modes that are memory-safe by design (the others crash
 * on purpose and are tested under the sandbox instead).
 *
 * Usage: check SIM_SO FAULTY_SO
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sensegate_driver.h"

struct api {
    uint32_t (*version)(void);
    int32_t (*open)(const uint8_t *, size_t, struct sg_driver **);
    int32_t (*read)(struct sg_driver *, uint8_t *, size_t);
    void (*close)(struct sg_driver *);
};

static int failures = 0;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

static struct api load(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    struct api a;
    *(void **)&a.version = dlsym(lib, "sg_driver_abi_version");
    *(void **)&a.open = dlsym(lib, "sg_driver_open");
    *(void **)&a.read = dlsym(lib, "sg_driver_read");
    *(void **)&a.close = dlsym(lib, "sg_driver_close");
    if (!a.version || !a.open || !a.read || !a.close) {
        fprintf(stderr, "%s: missing symbols\n", path);
        exit(2);
    }
    return a;
}

static int32_t open_str(struct api *a, const char *config, struct sg_driver **out) {
    return a->open((const uint8_t *)config, strlen(config), out);
}

/* Reads into an exactly-sized heap buffer, so ASan sees any overrun. */
static int32_t read_exact(struct api *a, struct sg_driver *d, size_t capacity) {
    uint8_t *buf = malloc(capacity == 0 ? 1 : capacity);
    int32_t n = a->read(d, buf, capacity);
    if (n > 0) {
        CHECK((size_t)n <= capacity, "read returned %d > capacity %zu", n, capacity);
        CHECK(n % SG_RECORD_SIZE == 0, "read returned %d, not whole records", n);
    }
    free(buf);
    return n;
}

static void check_sim(struct api *a) {
    CHECK(a->version() == SG_DRIVER_ABI_VERSION, "abi version");
    const char *bad[] = {"channels=0",   "channels=257", "channels=",    "channels=x",
                         "rate_hz=-1",   "rate_hz=100001", "seed=99999999999999999999999",
                         "channels=1a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sg_driver *d = (struct sg_driver *)0x1;
        CHECK(open_str(a, bad[i], &d) == SG_E_INVALID_CONFIG, "accepted %s", bad[i]);
        CHECK(d == (struct sg_driver *)0x1, "touched *out on failure for %s", bad[i]);
    }
    char *huge = malloc(SG_CONFIG_MAX + 1);
    memset(huge, 'a', SG_CONFIG_MAX + 1);
    struct sg_driver *d = NULL;
    CHECK(a->open((const uint8_t *)huge, SG_CONFIG_MAX + 1, &d) == SG_E_INVALID_CONFIG,
          "accepted an oversize config");
    free(huge);
    CHECK(a->open(NULL, 0, &d) == 0 && d != NULL, "empty config refused");
    a->close(d);

    /* Several instances at once, odd capacities, a full-speed one. */
    struct sg_driver *fast = NULL, *slow = NULL, *wide = NULL;
    CHECK(open_str(a, "channels=3;rate_hz=0;seed=7", &fast) == 0, "open fast");
    CHECK(open_str(a, "channels=1;rate_hz=1000", &slow) == 0, "open slow");
    CHECK(open_str(a, "channels=256;rate_hz=0", &wide) == 0, "open wide");
    size_t caps[] = {0, 1, 23, 24, 71, 72, 73, 4096, SG_READ_CAPACITY};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        int32_t n = read_exact(a, fast, caps[i]);
        if (caps[i] < 72) CHECK(n == SG_E_INTERNAL, "fast, capacity %zu: %d", caps[i], n);
        else CHECK(n > 0, "fast, capacity %zu: %d", caps[i], n);
        read_exact(a, slow, caps[i]);
        read_exact(a, wide, caps[i]);
    }
    for (int i = 0; i < 20; i++) CHECK(read_exact(a, slow, 4096) >= 0, "slow read failed");
    CHECK(a->read(fast, NULL, 100) == SG_E_INTERNAL, "NULL buffer accepted");
    CHECK(a->read(NULL, (uint8_t *)&caps, 8) == SG_E_INTERNAL, "NULL handle accepted");
    a->close(fast);
    a->close(slow);
    a->close(wide);
    a->close(NULL);
}

static void check_faulty(struct api *a) {
    CHECK(a->version() == SG_DRIVER_ABI_VERSION, "abi version");
    struct sg_driver *d = NULL;
    CHECK(open_str(a, "mode=nonsense", &d) == SG_E_INVALID_CONFIG, "accepted a bad mode");
    CHECK(open_str(a, "mode=null_open", &d) == 0 && d == NULL, "null_open");
    /* A string value longer than its buffer is refused, not copied past it. */
    char long_dir[1100] = "mode=steal;dir=";
    memset(long_dir + strlen(long_dir), 'a', sizeof long_dir - strlen(long_dir) - 1);
    long_dir[sizeof long_dir - 1] = 0;
    CHECK(open_str(a, long_dir, &d) == SG_E_INVALID_CONFIG, "accepted an over-long dir");
    const struct {
        const char *config;
        int32_t want; /* expected return of the read after the good ones */
    } cases[] = {
        {"mode=ok;after=0", SG_RECORD_SIZE},
        {"mode=garbage;after=2", SG_RECORD_SIZE},
        {"mode=ragged;after=1", SG_RECORD_SIZE - 1},
        {"mode=overclaim;after=1", 4096 + SG_RECORD_SIZE},
        {"mode=error;after=1", SG_E_IO},
        {"mode=future;period_ms=0", SG_RECORD_SIZE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        d = NULL;
        CHECK(open_str(a, cases[i].config, &d) == 0 && d != NULL, "open %s", cases[i].config);
        uint8_t *buf = malloc(4096);
        int32_t n = 0;
        for (int k = 0; k < 3; k++) n = a->read(d, buf, 4096);
        CHECK(n == cases[i].want, "%s: read gave %d, want %d", cases[i].config, n,
              cases[i].want);
        free(buf);
        a->close(d);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SIM_SO FAULTY_SO\n", argv[0]);
        return 2;
    }
    struct api sim = load(argv[1]);
    struct api faulty = load(argv[2]);
    check_sim(&sim);
    check_faulty(&faulty);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("reference drivers: all checks passed\n");
    return 0;
}
