/*
 * The pure logic of module healthcheck, apart from the module glue so that it
 * can be unit-tested without a running worker:
 *
 *  - expect_status: a set of HTTP status codes built from items "200",
 *    "200-399" (parsed by hc_status_item_parse), tested by hc_status_set_has.
 *  - the response scanner: finds the final status code at the start of what
 *    a server answered to the check request, skipping 1xx interim responses.
 *  - the rise/fall state machine of one server.
 *  - a "did you mean" helper for the keys of health_check.
 *
 * Nothing here allocates, logs or touches the module API.
 */
#ifndef WEIR_HEALTHCHECK_PROBE_H
#define WEIR_HEALTHCHECK_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* Status codes HTTP defines: three digits, 100..599 (RFC 9110 15). */
#define HC_STATUS_MIN 100
#define HC_STATUS_MAX 599

/* ----------------------------------------------------------- expect_status */

/* One bit per code HC_STATUS_MIN..HC_STATUS_MAX. Zeroed = empty. */
struct hc_status_set {
    uint64_t bits[(HC_STATUS_MAX - HC_STATUS_MIN + 64) / 64];
};

/* Parses one item, "204" or "200-399" (spaces around '-' allowed), into
 * *lo..*hi (inclusive). 0, or -1 with a reason for the user written to why
 * (NUL-terminated, at most whylen bytes). */
int hc_status_item_parse(const char *text, int *lo, int *hi, char *why, size_t whylen);
/* Adds lo..hi (already checked to lie within 100..599, lo <= hi). */
void hc_status_set_add(struct hc_status_set *s, int lo, int hi);
/* True if code is in the set; false for any code outside 100..599. */
int hc_status_set_has(const struct hc_status_set *s, int code);
int hc_status_set_empty(const struct hc_status_set *s);

/* ------------------------------------------------------- response scanner */

enum hc_scan {
    HC_SCAN_MORE = 0,     /* no final status line yet: read more bytes */
    HC_SCAN_STATUS = 1,   /* *status holds the final status code */
    HC_SCAN_INVALID = -1, /* not an HTTP/1.x status line */
};

/* Scans buf[0..len) — everything received so far on the connection — for
 * the status line of the final response: "HTTP/1.0" or "HTTP/1.1", one
 * space, three digits 100..599, then a space (and a reason phrase) or the
 * end of the line; lines end in CRLF or a bare LF. A 1xx response head
 * (status line and header lines up to the empty line) is skipped; 101 is
 * not interim here, it is a final answer (and normally not expected). */
enum hc_scan hc_scan_status(const char *buf, size_t len, int *status);

/* -------------------------------------------------------- rise/fall state */

/* A server's verdict and its counters of consecutive results. Zeroed = up,
 * with no result yet (servers start up, as in nginx and HAProxy). */
struct hc_state {
    uint32_t down;   /* 1 while the checks hold the server down */
    uint32_t passes; /* consecutive passed checks while down */
    uint32_t fails;  /* consecutive failed checks while up */
};

enum hc_change {
    HC_SAME = 0,     /* no change of verdict */
    HC_WENT_DOWN,    /* `fall` consecutive failures: now down */
    HC_WENT_UP,      /* `rise` consecutive passes: now up */
};

/* Records one check result (ok != 0: passed). rise and fall are >= 1. */
enum hc_change hc_state_record(struct hc_state *s, int ok, unsigned rise, unsigned fall);

/* ----------------------------------------------------------- did you mean */

/* The word of words[0..n) nearest to s by edit distance if that distance is
 * at most 2 (and less than s's length), else NULL. */
const char *hc_suggest(const char *s, const char *const *words, size_t n);

#endif
