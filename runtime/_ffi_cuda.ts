/**
 * CUDA driver API symbols (private). Versioned entry points are bound by their `_v2` names
 * explicitly: the unsuffixed exports are older ABIs. Each parameter is commented with its C type.
 */
export const CUDA_SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" }, // unsigned flags
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" }, // int*
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" }, // CUresult, const char**
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" }, // CUresult, const char**
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" }, // int*
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" }, // CUdevice*, int ordinal
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" }, // char*, int len, CUdevice
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" }, // int*, attr, CUdevice
  cuDeviceTotalMem: { name: "cuDeviceTotalMem_v2", parameters: ["buffer", "i32"], result: "i32" }, // size_t*, dev
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" }, // CUcontext*, CUdevice
  cuDevicePrimaryCtxRelease: { name: "cuDevicePrimaryCtxRelease_v2", parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["pointer"], result: "i32" }, // CUcontext
  cuCtxSynchronize: { parameters: [], result: "i32" },
  cuMemGetInfo: { name: "cuMemGetInfo_v2", parameters: ["buffer", "buffer"], result: "i32" }, // size_t* free, total
  cuMemAlloc: { name: "cuMemAlloc_v2", parameters: ["buffer", "usize"], result: "i32" }, // CUdeviceptr*, size_t
  cuMemFree: { name: "cuMemFree_v2", parameters: ["u64"], result: "i32" }, // CUdeviceptr
  cuMemHostAlloc: { parameters: ["buffer", "usize", "u32"], result: "i32" }, // void** pp, size_t, flags
  cuMemFreeHost: { parameters: ["pointer"], result: "i32" }, // void*
  cuMemcpyHtoD: { name: "cuMemcpyHtoD_v2", parameters: ["u64", "buffer", "usize"], result: "i32" },
  cuMemcpyDtoH: { name: "cuMemcpyDtoH_v2", parameters: ["buffer", "u64", "usize"], result: "i32" },
  cuMemcpyDtoD: { name: "cuMemcpyDtoD_v2", parameters: ["u64", "u64", "usize"], result: "i32" },
  // async copies take raw host addresses so pinned memory can be used
  cuMemcpyHtoDAsync: {
    name: "cuMemcpyHtoDAsync_v2",
    parameters: ["u64", "pointer", "usize", "pointer"],
    result: "i32",
  },
  cuMemcpyDtoHAsync: {
    name: "cuMemcpyDtoHAsync_v2",
    parameters: ["pointer", "u64", "usize", "pointer"],
    result: "i32",
  },
  cuMemcpyDtoDAsync: {
    name: "cuMemcpyDtoDAsync_v2",
    parameters: ["u64", "u64", "usize", "pointer"],
    result: "i32",
  },
  cuMemsetD8: { name: "cuMemsetD8_v2", parameters: ["u64", "u8", "usize"], result: "i32" }, // dst, uchar, N
  cuMemsetD8Async: { parameters: ["u64", "u8", "usize", "pointer"], result: "i32" }, // dst, uchar, N, stream
  cuMemsetD32Async: { parameters: ["u64", "u32", "usize", "pointer"], result: "i32" }, // dst, uint, N, stream
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" }, // CUstream*, flags
  cuStreamDestroy: { name: "cuStreamDestroy_v2", parameters: ["pointer"], result: "i32" },
  cuStreamSynchronize: { parameters: ["pointer"], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" }, // CUevent*, flags
  cuEventDestroy: { name: "cuEventDestroy_v2", parameters: ["pointer"], result: "i32" },
  cuEventRecord: { parameters: ["pointer", "pointer"], result: "i32" }, // CUevent, CUstream
  cuEventSynchronize: { parameters: ["pointer"], result: "i32" },
  cuEventElapsedTime: {
    name: "cuEventElapsedTime_v2",
    parameters: ["buffer", "pointer", "pointer"],
    result: "i32",
  }, // float*, start, end
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" }, // CUmodule*, const void* image
  cuModuleUnload: { parameters: ["pointer"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "pointer", "buffer"], result: "i32" }, // CUfunction*, mod, name
  cuFuncSetAttribute: { parameters: ["pointer", "i32", "i32"], result: "i32" }, // CUfunction, attrib, value
  cuFuncGetAttribute: { parameters: ["buffer", "i32", "pointer"], result: "i32" }, // int*, attrib, CUfunction
  // CUfunction, size_t paramIndex, size_t* paramOffset, size_t* paramSize (CUDA 12.4+)
  cuFuncGetParamInfo: { parameters: ["pointer", "usize", "buffer", "buffer"], result: "i32", optional: true },
  // f, gridDimX..Z, blockDimX..Z, sharedMemBytes, hStream, void** kernelParams, void** extra
  cuLaunchKernel: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "pointer", "pointer", "buffer"],
    result: "i32",
  },
  // const CUlaunchConfig*, CUfunction, void** kernelParams, void** extra
  cuLaunchKernelEx: { parameters: ["buffer", "pointer", "pointer", "buffer"], result: "i32" },
  // CUtensorMap*, dataType, rank, globalAddress, const u64* globalDim, const u64* globalStrides,
  // const u32* boxDim, const u32* elementStrides, interleave, swizzle, l2Promotion, oobFill
  cuTensorMapEncodeTiled: {
    parameters: [
      "buffer",
      "i32",
      "u32",
      "u64",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
      "i32",
      "i32",
    ],
    result: "i32",
  },
  cuStreamBeginCapture: { name: "cuStreamBeginCapture_v2", parameters: ["pointer", "i32"], result: "i32" },
  cuStreamEndCapture: { parameters: ["pointer", "buffer"], result: "i32" }, // CUstream, CUgraph*
  cuGraphInstantiateWithFlags: { parameters: ["buffer", "pointer", "u64"], result: "i32" }, // CUgraphExec*, CUgraph, flags
  cuGraphLaunch: { parameters: ["pointer", "pointer"], result: "i32" }, // CUgraphExec, CUstream
  cuGraphExecDestroy: { parameters: ["pointer"], result: "i32" },
  cuGraphDestroy: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** CUdevice_attribute values kiln reads. */
export const DEV_ATTR = {
  MAX_THREADS_PER_BLOCK: 1,
  CLOCK_RATE: 13,
  MULTIPROCESSOR_COUNT: 16,
  MEMORY_CLOCK_RATE: 36,
  GLOBAL_MEMORY_BUS_WIDTH: 37,
  L2_CACHE_SIZE: 38,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
  MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: 81,
  MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
} as const;

/** CUfunction_attribute values kiln reads or sets. */
export const FUNC_ATTR = {
  MAX_THREADS_PER_BLOCK: 0,
  SHARED_SIZE_BYTES: 1,
  LOCAL_SIZE_BYTES: 3,
  NUM_REGS: 4,
  MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
} as const;

/** Names of the CUresult codes a user is likely to meet (the driver supplies the rest). */
export const CU_RESULT_NAMES: Readonly<Record<number, string>> = {
  0: "CUDA_SUCCESS",
  1: "CUDA_ERROR_INVALID_VALUE",
  2: "CUDA_ERROR_OUT_OF_MEMORY",
  3: "CUDA_ERROR_NOT_INITIALIZED",
  4: "CUDA_ERROR_DEINITIALIZED",
  34: "CUDA_ERROR_STUB_LIBRARY",
  35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
  100: "CUDA_ERROR_NO_DEVICE",
  101: "CUDA_ERROR_INVALID_DEVICE",
  200: "CUDA_ERROR_INVALID_IMAGE",
  201: "CUDA_ERROR_INVALID_CONTEXT",
  209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
  218: "CUDA_ERROR_INVALID_PTX",
  300: "CUDA_ERROR_INVALID_SOURCE",
  400: "CUDA_ERROR_INVALID_HANDLE",
  500: "CUDA_ERROR_NOT_FOUND",
  700: "CUDA_ERROR_ILLEGAL_ADDRESS",
  701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
  702: "CUDA_ERROR_LAUNCH_TIMEOUT",
  719: "CUDA_ERROR_LAUNCH_FAILED",
  900: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
  999: "CUDA_ERROR_UNKNOWN",
};
