/**
 * kiln's runtime: CUDA driver and NVRTC through Deno FFI, device tensors, the kernel cache and launch.
 * Knows only the KernelSource type from codegen, so it also runs hand-written CUDA.
 *
 * @module
 */
export { Device, type DeviceInfo, devices, Event, hasGpu, Stream } from "./device.ts";
export { contiguousStrides, Tensor, type TensorOptions } from "./tensor.ts";
export { copyDtoDAsync, DeviceBuffer, memsetAsync, PinnedBuffer } from "./memory.ts";
export { compileFor, jit, type JitOptions, rawKernel, type RawKernelOptions } from "./jit.ts";
export { type Grid, type LaunchOptions, LoadedKernel, Module } from "./kernel.ts";
export { type Arg, ArgPacker, type PointerArg } from "./launch.ts";
export { Graph } from "./graph.ts";
export { encodeTensorMap, type Swizzle, type TensorMapSpec } from "./tensor_map.ts";
export {
  compileCuda,
  type CompileOptions,
  type CompileResult,
  hasNvrtc,
  nvrtcVersion,
  ptxasReport,
  supportedArchs,
} from "./nvrtc.ts";
export { CACHE_FORMAT_VERSION, cacheDir, cacheKey, DiskCache } from "./cache.ts";
export {
  ArgumentError,
  CompileError,
  CudaError,
  LaunchError,
  LibraryNotFoundError,
  LoadError,
  NvrtcError,
} from "./errors.ts";
export { debugLevel } from "./env.ts";
export { spin, timeKernel, type Timing } from "./timing.ts";
export { ctasPerSm, type OccupancySpec } from "./occupancy.ts";
