/* Which compute backend a context runs on, and whether it is available.
 *
 * The CPU backend (OpenBLAS) is always built. The CUDA backend is built with
 * -Dcuda=enabled/auto where nvcc exists (lib/cuda/backend_cuda.c); otherwise
 * lib/cuda/backend_none.c answers that it is not there.
 */
#ifndef DALLE_BACKEND_H
#define DALLE_BACKEND_H

#include "dalle/dalle.h"

/* Resolve params->backend (AUTO → CUDA when usable, else CPU, said through
 * the log callback) into *chosen, or fail with DALLE_ERR_UNSUPPORTED /
 * DALLE_ERR_BACKEND and a message saying why (not built, no GPU, driver). */
dalle_status backend_select(const dalle_ctx_params *params, dalle_backend *chosen);

/* Number of usable CUDA devices (0 without CUDA or without a GPU);
 * *why says why there is none. */
int backend_cuda_device_count(const char **why);

#endif
