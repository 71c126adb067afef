/* Small pure helpers shared by every module. */
#ifndef CERTVAULT_UTIL_H
#define CERTVAULT_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

/* Longest certificate, service or token name. */
#define CV_NAME_MAX 64

/* 1 when name is [A-Za-z0-9-]{1,64}, else 0. */
int cv_name_valid(const char *name);

/* 1 when pattern is a name glob: 1 to 64 of the name characters, '*' (any run of them) and
 * '?' (any one), else 0. */
int cv_glob_valid(const char *pattern);
/* 1 when name matches the name glob pattern, ASCII letters compared ignoring case (as
 * SQLite's lower(name) GLOB lower(pattern) does for these characters), else 0. */
int cv_glob_match(const char *pattern, const char *name);

/* Writes t as RFC 3339 UTC ("2026-11-22T20:30:00Z", explicit zero offset) into buf, which must
 * hold at least CV_TIME_BUFLEN bytes. Returns 0, or CV_ERR_INTERNAL when t cannot be shown. */
#define CV_TIME_BUFLEN 32
int cv_time_rfc3339(int64_t t, char *buf, size_t buflen);

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil): no time zone or libc range involved. */
int64_t cv_days_from_civil(int64_t y, int64_t m, int64_t d);

/* Parses an RFC 3339 date-time: "2026-11-22T20:30:00Z" or with an offset ("+01:00"),
 * optional fractional seconds (dropped), 'T' or 't', 'Z' or 'z'; years 1970 to 9999.
 * Returns 0 with seconds since the epoch, or CV_ERR_BAD_REQUEST. */
int cv_time_parse(const char *s, int64_t *ret);

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and ages, never for dates. */
int64_t cv_monotonic_ms(void);
/* Initialises cond for pthread_cond_timedwait deadlines on CLOCK_MONOTONIC (which do not
 * jump with the wall clock). 0 or an errno value; cond is not made on failure. */
int cv_cond_init_monotonic(pthread_cond_t *cond);

/* Lower-case hex of len bytes into buf (2*len+1 bytes). */
void cv_hex_encode(const uint8_t *bytes, size_t len, char *buf);
/* Parses exactly 2*len hex digits. Returns 0 or CV_ERR_BAD_REQUEST. */
int cv_hex_decode(const char *hex, uint8_t *ret_bytes, size_t len);

/* Parses a whole decimal integer within [min, max]. Returns 0 or CV_ERR_BAD_REQUEST. */
int cv_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/* json as text (json_dumps flags) in malloc'd memory the caller frees with free(): unlike
 * json_dumps, whose text belongs to jansson's allocator, which certvaultd replaces. Returns 0,
 * CV_ERR_NOMEM, or CV_ERR_INTERNAL when json cannot be shown. */
int cv_json_text(const json_t *json, size_t flags, char **ret_text);

#endif
