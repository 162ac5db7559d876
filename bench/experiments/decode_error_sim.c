/* decode_error_sim.c — the fp16 decode error of three w3 weight decodes, simulated on the CPU with
 * _Float16 (bench/NOTES.md v6v). Not part of the build: gcc -O2 decode_error_sim.c -lm && ./a.out
 * [zero_lo zero_hi]. For 512 rows x 4096 columns in groups of 16 (scale in [0.005, 0.02], zero
 * uniform in [zero_lo, zero_hi], codes uniform in 0..7, x uniform in [-1, 1] rounded to fp16) it
 * prints the RMS error of the decoded weights relative to the RMS exact weight, the largest error
 * in units of scale, and the RMS error of y = W x relative to the RMS exact y, for:
 *   offset:    ŵ = fp16((fp16(1024 + q) − fp16(1024 + round(zero)))·fp16(scale) + fp16(−scale·zf))
 *              (the v6u kernel: HSUB2 exact, one HFMA2 rounding);
 *   off8:      ŵ = fp16((8 + q)·fp16(scale) + fp16(−fp16(scale)·(8 + zero))) (rejected);
 *   subnormal: ŵ = fp16((q·2^-17)·fp16(scale·2^17) + fp16(−scale16·zero)) (the v6v kernel).
 * The fused multiply-add is evaluated in double, then rounded once, as HFMA2 does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef _Float16 half;

static double uniform(void) {
    return rand() / (RAND_MAX + 1.0);
}

int main(int argc, char **argv) {
    const double zlo = argc > 2 ? atof(argv[1]) : -0.5, zhi = argc > 2 ? atof(argv[2]) : 7.5;
    enum { R = 512, C = 4096, N = 3 };
    const char *name[N] = {"offset", "off8", "subnormal"};
    double werr2[N] = {0}, yerr2[N] = {0}, maxerr[N] = {0}, wref2 = 0, yref2 = 0;
    for (int r = 0; r < R; r++) {
        double yref = 0, y[N] = {0};
        for (int g = 0; g < C / 16; g++) {
            const float scale = (float)((0.5 + 1.5 * uniform()) * 0.01);
            const float zero = (float)(zlo + (zhi - zlo) * uniform());
            const half s16 = (half)scale;
            const float zi = rintf(zero);
            const half zq = (half)(1024.f + zi), bias = (half)(-scale * (zero - zi));
            const half c8 = (half)(-(double)s16 * (8.0 + zero));
            const half b17 = (half)(scale * 131072.f);
            const half c17 = (half)(-((double)b17 / 131072.0) * zero);
            for (int k = 0; k < 16; k++) {
                const int q = rand() % 8;
                const double x = (double)(half)(2 * uniform() - 1);
                const double ref = (double)scale * (q - zero);
                half v[N];
                v[0] = (half)((double)(half)((half)(1024 + q) - zq) * (double)s16 + (double)bias);
                v[1] = (half)((double)s16 * (8 + q) + (double)c8);
                v[2] = (half)(q * ldexp(1, -17) * (double)b17 + (double)c17);
                yref += ref * x, wref2 += ref * ref;
                for (int i = 0; i < N; i++) {
                    const double e = (double)v[i] - ref;
                    y[i] += (double)v[i] * x, werr2[i] += e * e;
                    if (fabs(e) / scale > maxerr[i]) maxerr[i] = fabs(e) / scale;
                }
            }
        }
        for (int i = 0; i < N; i++) yerr2[i] += (y[i] - yref) * (y[i] - yref);
        yref2 += yref * yref;
    }
    for (int i = 0; i < N; i++)
        printf("%-10s weight rms rel %.3g  max |err|/scale %.3g  output rms rel %.3g\n", name[i],
               sqrt(werr2[i] / wref2), maxerr[i], sqrt(yerr2[i] / yref2));
    return 0;
}
