// The floor for kiln's launch cost: the same launch mechanism (cuLaunchKernel with one packed
// argument buffer through `extra`) from C, on the same cubin. Built by bench/launch.ts with nvcc.
//   launch <cubin> <entry> <dptr> -> prints {"plain_us": ..., "graph_us_per_kernel": ...}
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { const char* s; cuGetErrorName(r, &s); \
  fprintf(stderr, "%s failed: %s\n", #x, s); exit(1); } } while (0)

static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }

int main(int argc, char** argv) {
  if (argc < 3) { fprintf(stderr, "usage: launch <cubin> <entry>\n"); return 2; }
  FILE* f = fopen(argv[1], "rb"); fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  char* img = malloc(n); fread(img, 1, n, f); fclose(f);
  CUdevice dev; CUcontext ctx; CUmodule mod; CUfunction fn; CUstream s; CUdeviceptr x;
  CK(cuInit(0)); CK(cuDeviceGet(&dev, 0)); CK(cuDevicePrimaryCtxRetain(&ctx, dev)); CK(cuCtxSetCurrent(ctx));
  CK(cuModuleLoadData(&mod, img)); CK(cuModuleGetFunction(&fn, mod, argv[2]));
  CK(cuStreamCreate(&s, 0)); CK(cuMemAlloc(&x, 1 << 20));
  struct { CUdeviceptr a; CUdeviceptr b; int n; float v; } args = { x, x + 4096, 256, 1.0f };
  size_t size = sizeof(args);
  void* extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &args, CU_LAUNCH_PARAM_BUFFER_SIZE, &size, CU_LAUNCH_PARAM_END };
  const int batch = 256, batches = 80;
  double total = 0;
  for (int b = 0; b < batches + 5; b++) {
    CK(cuStreamSynchronize(s));
    double t0 = now_us();
    for (int i = 0; i < batch; i++) { args.n = 256 + (i & 1); CK(cuLaunchKernel(fn, 1, 1, 1, 128, 1, 1, 0, s, NULL, extra)); }
    double t1 = now_us();
    if (b >= 5) total += t1 - t0;
  }
  double plain = total / (batch * batches);
  CUgraph g; CUgraphExec ge;
  CK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
  for (int i = 0; i < 4; i++) CK(cuLaunchKernel(fn, 1, 1, 1, 128, 1, 1, 0, s, NULL, extra));
  CK(cuStreamEndCapture(s, &g)); CK(cuGraphInstantiateWithFlags(&ge, g, 0));
  total = 0;
  for (int b = 0; b < batches + 5; b++) {
    CK(cuStreamSynchronize(s));
    double t0 = now_us();
    for (int i = 0; i < batch / 4; i++) CK(cuGraphLaunch(ge, s));
    double t1 = now_us();
    if (b >= 5) total += t1 - t0;
  }
  printf("{\"plain_us\": %.3f, \"graph_us_per_kernel\": %.3f}\n", plain, total / (batch * batches));
  return 0;
}
