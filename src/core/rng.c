/* Deterministic random numbers for initialisation, data generation and
 * sampling: xoshiro256** seeded through splitmix64, Box-Muller normals. */
#include <math.h>

#include "internal.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void lina_rng_seed(lina_rng *r, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&s);
    r->has_spare = 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lina_rng_u64(lina_rng *r) {
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return result;
}

double lina_rng_uniform(lina_rng *r) { return (lina_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

double lina_rng_normal(lina_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = ((lina_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = lina_rng_uniform(r), rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(6.283185307179586 * u2);
    r->has_spare = 1;
    return rad * cos(6.283185307179586 * u2);
}

uint64_t lina_rng_below(lina_rng *r, uint64_t n) {
    /* Lemire's multiply-shift with rejection: unbiased for any n >= 1 */
    __uint128_t m = (__uint128_t)lina_rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t threshold = -n % n;
        while (lo < threshold) {
            m = (__uint128_t)lina_rng_u64(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}
