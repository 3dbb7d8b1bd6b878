/*
 * A tiny parser for the reference drivers' configuration strings:
 * "key=value;key=value", at most SG_CONFIG_MAX bytes, not NUL-terminated.
 * Shared by sim.c and faulty.c; header-only so each driver stays one object.
 */
#ifndef SG_REFERENCE_CONFIG_H
#define SG_REFERENCE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sensegate_driver.h"

/* Finds the first "key=value" item for `key`. Returns 1 and sets `*value`
 * and `*vlen` to its value (not NUL-terminated), 0 when the key is absent. */
static inline int sg_config_find(const uint8_t *config, size_t len, const char *key,
                                 const uint8_t **value, size_t *vlen) {
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && config[i] != ';') i++;
        size_t end = i; /* [start, end) is one "key=value" item */
        i++;            /* skip ';' */
        if (end - start > klen && memcmp(config + start, key, klen) == 0 &&
            config[start + klen] == '=') {
            *value = config + start + klen + 1;
            *vlen = end - start - klen - 1;
            return 1;
        }
    }
    return 0;
}

/* Finds `key` and parses its value as an unsigned decimal no larger than
 * `max`. Returns 1 and stores it, 0 when the key is absent, -1 when the value
 * is malformed or too large. */
static inline int sg_config_u64(const uint8_t *config, size_t len, const char *key, uint64_t max,
                                uint64_t *out) {
    const uint8_t *value;
    size_t vlen;
    if (!sg_config_find(config, len, key, &value, &vlen)) return 0;
    if (vlen == 0) return -1;
    uint64_t v = 0;
    for (size_t p = 0; p < vlen; p++) {
        uint8_t c = value[p];
        if (c < '0' || c > '9') return -1;
        if (v > (max - (uint64_t)(c - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return 1;
}

/* Finds `key` and copies its value, NUL-terminated, into `out` of `size`
 * bytes. Returns 1 when found, 0 when absent, -1 when it does not fit. */
static inline int sg_config_str(const uint8_t *config, size_t len, const char *key, char *out,
                                size_t size) {
    const uint8_t *value;
    size_t vlen;
    if (!sg_config_find(config, len, key, &value, &vlen)) return 0;
    if (vlen + 1 > size) return -1;
    memcpy(out, value, vlen);
    out[vlen] = 0;
    return 1;
}

/* Finds `key` and compares its value with `want`. Returns 1 on a match. */
static inline int sg_config_is(const uint8_t *config, size_t len, const char *key, const char *want) {
    const uint8_t *value;
    size_t vlen;
    size_t wlen = strlen(want);
    return sg_config_find(config, len, key, &value, &vlen) && vlen == wlen &&
           memcmp(value, want, wlen) == 0;
}

/* Writes one record, little-endian, at `buf` (SG_RECORD_SIZE bytes). */
static inline void sg_put_record(uint8_t *buf, uint32_t channel, uint32_t quality, int64_t ts_us,
                          double value) {
    uint64_t ts = (uint64_t)ts_us, bits;
    memcpy(&bits, &value, sizeof bits);
    for (int i = 0; i < 4; i++) buf[i] = (uint8_t)(channel >> (8 * i));
    for (int i = 0; i < 4; i++) buf[4 + i] = (uint8_t)(quality >> (8 * i));
    for (int i = 0; i < 8; i++) buf[8 + i] = (uint8_t)(ts >> (8 * i));
    for (int i = 0; i < 8; i++) buf[16 + i] = (uint8_t)(bits >> (8 * i));
}

#endif
