/* Clocks shared by the benchmarks (not by the library). SPDX-License-Identifier: MIT */
#ifndef KD_BENCH_CLOCK_H
#define KD_BENCH_CLOCK_H

#include <time.h>

/* Seconds on the given clock: CLOCK_MONOTONIC for wall time, CLOCK_THREAD_CPUTIME_ID or
 * CLOCK_PROCESS_CPUTIME_ID for CPU time. */
static inline double bench_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall time. */
static inline double now(void) { return bench_seconds(CLOCK_MONOTONIC); }

#endif /* KD_BENCH_CLOCK_H */
