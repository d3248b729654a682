// The hardware floor of one online-SGD step at m = 20 (padded to 24: three blocks of eight
// neurons), for comparing ext/dynamics.pyx with what this machine allows. It keeps the step's
// dependency chain and its arithmetic, as the kernel does them,
//
//     r -> (sa, su) -> a_j, u_j -> z_j -> s(z_j), a_j s'(z_j) -> eight partial sums -> r,
//
// and drops everything else: no random draws (the inputs cycle through a table, the labels
// are 1), no teacher, no NaN check, no records. GCC's vector extensions make each block one
// vector of the machine's width, whatever the machine. bench_sgd.py builds and runs it:
//
//     c++ -O3 -march=native -ffp-contract=off floor.cpp -o floor && ./floor ramp 20000000
//
// prints ns per step (activation: ramp, smoothstep or relu).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

typedef double block __attribute__((vector_size(64)));    // eight neurons
typedef long long mask __attribute__((vector_size(64)));  // -1 where true
typedef double half_block __attribute__((vector_size(32)));
typedef double pair __attribute__((vector_size(16)));
enum { BLOCKS = 3, TABLE = 4096 };
enum Kind { RAMP, SMOOTHSTEP, RELU };

static inline block splat(double x) { return block{x, x, x, x, x, x, x, x}; }

// s(z) and a s'(z) of a block, in the forms of ext/activations.pxd
template <Kind kind>
static inline void activation(block z, block a, block *s, block *slope) {
    const block zero = splat(0.0), one = splat(1.0), half = splat(0.5);
    if (kind == RAMP) {
        mask low = z < -half, high = z > half;
        *s = high ? one : (low ? zero : z + half);
        *slope = (low | high) ? zero : a;
    } else if (kind == SMOOTHSTEP) {
        block w = half - (block)((mask)z & ~(mask)splat(-0.0));   // 1/2 - |z|
        w = w < zero ? zero : w;
        block ww = w * w, c = (splat(4.0) * w) * ww;
        *s = z <= zero ? c : one - c;
        *slope = a * ((splat(12.0) * w) * w);
    } else {
        mask on = z > zero;
        *s = on ? z : zero;
        *slope = on ? a : zero;
    }
}

template <Kind kind>
static double run(long steps, const double *xs) {
    block a[BLOCKS], u[BLOCKS], phi[BLOCKS], adphi[BLOCKS];
    const double inv_eta = 250.0, ca = 2e-5, cu = 2e-5 * 2e-5 * 250.0;
    double sa = 0, su = 0, bias = 0, total = 0;
    for (int b = 0; b < BLOCKS; b++) {
        phi[b] = adphi[b] = a[b] = splat(0.0);
        for (int l = 0; l < 8; l++) u[b][l] = (8 * b + l + 0.5) / (8 * BLOCKS);
    }
    for (long i = 0; i < steps; i++) {
        block x = splat(xs[i % TABLE]), f = splat(0.0);
        bias -= sa;
        for (int b = 0; b < BLOCKS; b++) {
            a[b] = a[b] - splat(sa) * phi[b];
            u[b] = u[b] + splat(su) * adphi[b];
            activation<kind>((x - u[b]) * splat(inv_eta), a[b], &phi[b], &adphi[b]);
            f += a[b] * phi[b];
        }
        // ((f0 + f4) + (f1 + f5)) + ((f2 + f6) + (f3 + f7)), the kernel's order, by halves
        half_block g = __builtin_shufflevector(f, f, 0, 1, 2, 3) + __builtin_shufflevector(f, f, 4, 5, 6, 7);
        pair h = __builtin_shufflevector(g, g, 0, 2) + __builtin_shufflevector(g, g, 1, 3);
        double r = (h[0] + h[1]) + (bias - 1.0);
        sa = ca * r;
        su = cu * r;
        total += r;
    }
    return total;
}

int main(int argc, char **argv) {
    static double xs[TABLE];
    long steps = argc > 2 ? std::atol(argv[2]) : 20000000;
    const char *name = argc > 1 ? argv[1] : "";
    double (*chosen)(long, const double *) = !std::strcmp(name, "ramp") ? run<RAMP>
        : !std::strcmp(name, "smoothstep") ? run<SMOOTHSTEP> : !std::strcmp(name, "relu") ? run<RELU>
        : nullptr;
    if (chosen == nullptr || steps < 1) {
        std::fprintf(stderr, "usage: floor ramp|smoothstep|relu [STEPS]\n");
        return 2;
    }
    for (int i = 0; i < TABLE; i++) xs[i] = std::fmod(0.6180339887498949 * i, 1.0);
    auto start = std::chrono::steady_clock::now();
    double total = chosen(steps, xs);
    std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    std::printf("%.3f\n", wall.count() / steps * 1e9);
    return std::isfinite(total) ? 0 : 1;
}
