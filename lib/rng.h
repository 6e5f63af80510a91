/* A counter-based random number generator: a value is a pure function of
 * (seed, stream, counter, lane), so sampling does not depend on how images
 * are grouped into batches, on thread counts or on the order of calls.
 * Built from SplitMix64's finaliser (a bijective 64-bit mixer with full
 * avalanche), chained over the key words. Not cryptographic. */
#ifndef DALLE_RNG_H
#define DALLE_RNG_H

#include <stdint.h>

uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

/* The part of rng_u64 that does not depend on the lane: for many lanes of
 * one (seed, stream, counter) (a sampler's row of token ids), mix it once;
 * rng_u64_at(rng_key(s, st, c), lane) == rng_u64(s, st, c, lane), and so
 * on for the uniform and Gumbel values. */
uint64_t rng_key(uint64_t seed, uint64_t stream, uint64_t counter);
uint64_t rng_u64_at(uint64_t key, uint64_t lane);
double rng_uniform_at(uint64_t key, uint64_t lane);
double rng_gumbel_at(uint64_t key, uint64_t lane);

/* Uniform in the open interval (0, 1): 53 random bits, never 0 or 1. */
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

/* Standard Gumbel noise -log(-log(u)), u = rng_uniform(...). */
double rng_gumbel(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane);

#endif
