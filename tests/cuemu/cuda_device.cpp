// lib/cuda/cuda_device.cu compiled as C++ on the CUDA emulator (tests/cuemu/cuda_runtime.h).
#include "cuda/cuda_device.cu"
