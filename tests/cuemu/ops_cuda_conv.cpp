// lib/cuda/ops_cuda_conv.cu compiled as C++ on the CUDA emulator (tests/cuemu/cuda_runtime.h).
#include "cuda/ops_cuda_conv.cu"
