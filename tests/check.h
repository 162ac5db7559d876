/* check.h — the pass/fail counter of the randomized numeric tests (test_cpu_matmul, test_gpu):
 * CHECK(cond, fmt, ...) counts a pass, or counts a failure and prints the location and message.
 * One translation unit per test program, so the counters live here. */
#ifndef SPQR_TEST_CHECK_H
#define SPQR_TEST_CHECK_H
#include <stdio.h>

static int passed, failed;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            passed++;                                                                              \
        else {                                                                                     \
            failed++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)
#endif
