/* Built with CUDA: ask the runtime how many GPUs there are. */
#include "../backend.h"

int cudab_count_devices(const char **why);

int backend_cuda_device_count(const char **why) { return cudab_count_devices(why); }
