/** NVRTC symbols (private). Each parameter is commented with its C declaration. */
export const NVRTC_SYMBOLS = {
  nvrtcVersion: { parameters: ["buffer", "buffer"], result: "i32" }, // int* major, int* minor
  nvrtcGetErrorString: { parameters: ["i32"], result: "pointer" }, // nvrtcResult -> const char*
  nvrtcGetNumSupportedArchs: { parameters: ["buffer"], result: "i32", optional: true }, // int*
  nvrtcGetSupportedArchs: { parameters: ["buffer"], result: "i32", optional: true }, // int*
  nvrtcCreateProgram: {
    // nvrtcProgram* prog, const char* src, const char* name, int numHeaders,
    // const char* const* headers, const char* const* includeNames
    parameters: ["buffer", "buffer", "buffer", "i32", "pointer", "pointer"],
    result: "i32",
  },
  nvrtcCompileProgram: { parameters: ["pointer", "i32", "buffer"], result: "i32", nonblocking: true }, // prog, n, const char* const* opts
  nvrtcDestroyProgram: { parameters: ["buffer"], result: "i32" }, // nvrtcProgram*
  nvrtcGetProgramLogSize: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, size_t*
  nvrtcGetProgramLog: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, char*
  nvrtcGetPTXSize: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, size_t*
  nvrtcGetPTX: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, char*
  nvrtcGetCUBINSize: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, size_t*
  nvrtcGetCUBIN: { parameters: ["pointer", "buffer"], result: "i32" }, // prog, char*
} as const satisfies Deno.ForeignLibraryInterface;
