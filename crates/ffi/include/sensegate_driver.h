/*
 * sensegate driver ABI, version 1.
 *
 * A sensor driver is a shared object exporting the four functions below. It
 * runs in `sensegate driver-host`, a sandboxed child process, never inside the
 * daemon. The host treats everything a driver returns as hostile.
 *
 * Rules for drivers:
 *  - No global state: everything lives behind the handle from sg_driver_open,
 *    so several instances can run at once.
 *  - sg_driver_read writes at most `capacity` bytes into `buf` and returns the
 *    number written (0 when no reading is ready yet), or a negative SG_E_* code.
 *    It should return within 1 s; the host kills a driver that hangs.
 *  - sg_driver_close frees the handle; the handle is not used afterwards.
 */
#ifndef SENSEGATE_DRIVER_H
#define SENSEGATE_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_DRIVER_ABI_VERSION 1u

/* Bytes the host offers per read; a driver must not assume more. */
#define SG_READ_CAPACITY 65536u
/* Longest configuration string passed to sg_driver_open. */
#define SG_CONFIG_MAX 4096u
/* Channels per driver instance: valid channel numbers are 0..SG_CHANNELS_MAX-1. */
#define SG_CHANNELS_MAX 256u

/* Error codes (negative returns). */
#define SG_E_INVALID_CONFIG (-1)
#define SG_E_IO (-2)
#define SG_E_NO_DEVICE (-3)
#define SG_E_INTERNAL (-4)

/*
 * Record format written by sg_driver_read: zero or more records of exactly
 * SG_RECORD_SIZE bytes each, back to back, all little-endian, no padding:
 *
 *   offset  size  field
 *   0       4     uint32  channel       0..SG_CHANNELS_MAX-1
 *   4       4     uint32  quality       0 good, 1 uncertain, 2 bad
 *   8       8     int64   timestamp_us  microseconds since the Unix epoch, UTC;
 *                                       0 means "stamp it on receipt"
 *   16      8     float64 value         IEEE 754 binary64, finite
 *
 * A return value that is not a multiple of SG_RECORD_SIZE, or any record
 * breaking the ranges above, marks the driver faulted.
 */
#define SG_RECORD_SIZE 24u

#define SG_QUALITY_GOOD 0u
#define SG_QUALITY_UNCERTAIN 1u
#define SG_QUALITY_BAD 2u

struct sg_driver; /* opaque */

/* Must return SG_DRIVER_ABI_VERSION; the host checks it before anything else. */
uint32_t sg_driver_abi_version(void);

/* Opens an instance from `config` (config_len bytes, not NUL-terminated, at
 * most SG_CONFIG_MAX). On success stores a non-NULL handle in *out and returns
 * 0; otherwise returns a negative SG_E_* code and leaves *out untouched. */
int32_t sg_driver_open(const uint8_t *config, size_t config_len, struct sg_driver **out);

/* Writes records into buf (capacity bytes). Returns bytes written, or a
 * negative SG_E_* code. */
int32_t sg_driver_read(struct sg_driver *drv, uint8_t *buf, size_t capacity);

/* Closes an instance opened by sg_driver_open. */
void sg_driver_close(struct sg_driver *drv);

#ifdef __cplusplus
}
#endif

#endif /* SENSEGATE_DRIVER_H */
