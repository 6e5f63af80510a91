/* The bundle reader and writer, as the models see them.
 *
 * The file format is specified in docs/bundle-format.md; the public calls
 * (dalle_bundle_*) are documented in include/dalle/dalle.h. This header adds
 * what models need to load their weights: a tensor decoded once into a
 * 64-byte-aligned buffer owned by the bundle, checked against the shape the
 * model expects, and typed metadata look-ups with defaults.
 */
#ifndef DALLE_BUNDLE_H
#define DALLE_BUNDLE_H

#include "dalle/dalle.h"

/* The path (or "<memory>") the bundle was opened from, for messages. */
const char *bundle_path(const dalle_bundle *b);

/* Float32 data of tensor `name`, decoded (and converted from f16/bf16) once
 * and kept by the bundle until dalle_bundle_close; aliases point into their
 * target's data. The tensor must have exactly `ndim` dims equal to `dims`
 * (DALLE_ERR_MISMATCH names the tensor, expected and found shapes);
 * ndim < 0 skips the shape check. Missing tensor: DALLE_ERR_MISMATCH too,
 * since a model needs it. */
dalle_status bundle_tensor_f32(dalle_bundle *b, const char *name, int ndim,
                               const int64_t *dims, const float **out);

/* The data of tensor `name` in the dtype it is stored in (*dtype: f32,
 * f16, bf16 or i8; other dtypes are DALLE_ERR_MISMATCH), decoded once and
 * kept by the bundle like bundle_tensor_f32, whose buffer an f32 tensor
 * shares; f16/bf16 elements are in the host's byte order. Shape checked as
 * bundle_tensor_f32. For the reduced-precision weights of the transformer,
 * which stay reduced in memory (docs/bundle-format.md). */
dalle_status bundle_tensor_typed(dalle_bundle *b, const char *name, int ndim,
                                 const int64_t *dims, dalle_dtype *dtype, const void **out);

/* Shape of tensor `name`: DALLE_ERR_MISMATCH (naming it) when absent. */
dalle_status bundle_tensor_shape(const dalle_bundle *b, const char *name,
                                 dalle_tensor_info *info);

/* Metadata with a default for absent keys. Wrong types are errors. */
dalle_status bundle_int(const dalle_bundle *b, const char *key, int64_t def, int64_t *out);
dalle_status bundle_float(const dalle_bundle *b, const char *key, double def, double *out);
dalle_status bundle_bool(const dalle_bundle *b, const char *key, int def, int *out);

#endif
