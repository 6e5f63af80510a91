#include "rng.h"

#include <math.h>

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_key(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* each key word goes through a full mixing round, so neighbouring
     * counters or lanes give unrelated outputs */
    return mix(mix(mix(seed) ^ stream) ^ counter);
}

uint64_t rng_u64_at(uint64_t key, uint64_t lane) { return mix(key ^ lane); }

double rng_uniform_at(uint64_t key, uint64_t lane)
{
    uint64_t x = rng_u64_at(key, lane) >> 11;
    return ((double)x + 0.5) * 0x1.0p-53;
}

double rng_gumbel_at(uint64_t key, uint64_t lane) { return -log(-log(rng_uniform_at(key, lane))); }

uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane)
{
    return rng_u64_at(rng_key(seed, stream, counter), lane);
}

double rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane)
{
    return rng_uniform_at(rng_key(seed, stream, counter), lane);
}

double rng_gumbel(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane)
{
    return rng_gumbel_at(rng_key(seed, stream, counter), lane);
}
