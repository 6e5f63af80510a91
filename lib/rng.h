/* A counter-based random number generator: a value is a pure function of
 * (seed, stream, counter, lane), so sampling does not depend on how images
 * are grouped into batches, on thread counts or on the order of calls.
 * Built from SplitMix64's finaliser (a bijective 64-bit mixer with full
 * avalanche), chained over the key words. Not cryptographic. */
#ifndef DALLE_RNG_H
#define DALLE_RNG_H

#include <stdint.h>

uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

/* Uniform in the open interval (0, 1): 53 random bits, never 0 or 1. */
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

/* Standard Gumbel noise -log(-log(u)), u = rng_uniform(...). */
double rng_gumbel(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

#endif
