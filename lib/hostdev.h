/* DALLE_HOST_DEVICE: a function in a plain C header that lib/cuda's kernels
 * call too (nvcc compiles it for both sides; C, C++ and the CUDA emulator
 * see an ordinary inline function). */
#ifndef DALLE_HOSTDEV_H
#define DALLE_HOSTDEV_H

#if defined(__CUDACC__)
#define DALLE_HOST_DEVICE __host__ __device__
#else
#define DALLE_HOST_DEVICE
#endif

#endif
