/*
 * The reference `sim` driver: deterministic waveforms, one per channel.
 *
 * Config: "channels=N;rate_hz=R;seed=S" (defaults 1, 10, 1).
 *   channels  1..SG_CHANNELS_MAX
 *   rate_hz   samples per second per channel, 1..100000; 0 means "as fast as
 *             the host reads" (every read fills the buffer; for benchmarks)
 *   seed      noise seed
 *
 * Channel c is a sine with period (10 + c) s and amplitude 10 + c, offset
 * 20 + c, plus small deterministic noise. With rate_hz > 0, sg_driver_read
 * sleeps until the next sample is due (at most 100 ms, well within the 1 s
 * the ABI allows), then writes every sample that is due, oldest first.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "sensegate_driver.h"

struct sg_driver {
    uint32_t channels;
    uint64_t rate_hz;
    uint64_t noise; /* SplitMix64 state */
    int64_t next_us; /* when the next sample is due (rate_hz > 0), monotonic */
    int64_t wall_offset_us; /* wall clock minus monotonic clock, at open */
    int64_t tick;    /* samples written per channel so far */
    int64_t start_us;
};

static int64_t clock_us(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Pacing uses the monotonic clock (a wall-clock step must not stall or
 * flood the stream); timestamps are wall-clock time. */
static int64_t now_us(void) { return clock_us(CLOCK_MONOTONIC); }
static int64_t wall_us(void) { return clock_us(CLOCK_REALTIME); }

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double sample(struct sg_driver *d, uint32_t c, int64_t ts_us) {
    double t = (double)(ts_us - d->start_us) / 1e6;
    double period = 10.0 + c;
    double noise = ((double)(splitmix64(&d->noise) >> 11) / 9007199254740992.0 - 0.5) * 0.2;
    return 20.0 + c + (10.0 + c) * sin(6.283185307179586 * t / period) + noise;
}

uint32_t sg_driver_abi_version(void) { return SG_DRIVER_ABI_VERSION; }

int32_t sg_driver_open(const uint8_t *config, size_t config_len, struct sg_driver **out) {
    uint64_t channels = 1, rate = 10, seed = 1;
    if (config == NULL && config_len != 0) return SG_E_INVALID_CONFIG;
    if (config_len > SG_CONFIG_MAX) return SG_E_INVALID_CONFIG;
    if (sg_config_u64(config, config_len, "channels", SG_CHANNELS_MAX, &channels) < 0 ||
        sg_config_u64(config, config_len, "rate_hz", 100000, &rate) < 0 ||
        sg_config_u64(config, config_len, "seed", UINT64_MAX, &seed) < 0 || channels == 0)
        return SG_E_INVALID_CONFIG;
    struct sg_driver *d = calloc(1, sizeof *d);
    if (d == NULL) return SG_E_INTERNAL;
    d->channels = (uint32_t)channels;
    d->rate_hz = rate;
    d->noise = seed;
    d->start_us = now_us();
    d->next_us = d->start_us;
    d->wall_offset_us = wall_us() - d->start_us;
    *out = d;
    return 0;
}

int32_t sg_driver_read(struct sg_driver *d, uint8_t *buf, size_t capacity) {
    if (d == NULL || buf == NULL) return SG_E_INTERNAL;
    /* Never trust the host's capacity beyond what the ABI promises: the
     * return value must fit an int32_t. */
    if (capacity > SG_READ_CAPACITY) capacity = SG_READ_CAPACITY;
    size_t per_tick = (size_t)d->channels * SG_RECORD_SIZE;
    size_t ticks_fit = capacity / per_tick;
    if (ticks_fit == 0) return SG_E_INTERNAL;
    int64_t now = now_us();
    int64_t ticks;
    if (d->rate_hz == 0) {
        ticks = (int64_t)ticks_fit;
    } else {
        if (now < d->next_us) {
            int64_t wait = d->next_us - now;
            if (wait > 100000) wait = 100000;
            struct timespec ts = {.tv_sec = wait / 1000000, .tv_nsec = (wait % 1000000) * 1000};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
            now = now_us();
        }
        if (now < d->next_us) return 0;
        /* After a long stall, skip ahead rather than replay the backlog. */
        if (now - d->next_us > 1000000) d->next_us = now;
        int64_t step = 1000000 / (int64_t)d->rate_hz;
        if (step == 0) step = 1;
        ticks = (now - d->next_us) / step + 1;
        if (ticks > (int64_t)ticks_fit) ticks = (int64_t)ticks_fit;
    }
    size_t written = 0;
    for (int64_t k = 0; k < ticks; k++) {
        int64_t ts = d->rate_hz == 0 ? now : d->next_us;
        for (uint32_t c = 0; c < d->channels; c++) {
            sg_put_record(buf + written, c, SG_QUALITY_GOOD, ts + d->wall_offset_us, sample(d, c, ts));
            written += SG_RECORD_SIZE;
        }
        if (d->rate_hz != 0) d->next_us += 1000000 / (int64_t)d->rate_hz;
        d->tick++;
    }
    return (int32_t)written;
}

void sg_driver_close(struct sg_driver *d) { free(d); }
