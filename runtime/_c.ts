/** Small helpers for C strings and pointers over Deno FFI (private). */

const enc = new TextEncoder();

/**
 * NUL-terminated UTF-8 bytes of `s`, in an off-heap ArrayBuffer. Small typed arrays can live inside the
 * V8 heap, where a garbage collection may move them: an address taken from one and read later (by a
 * nonblocking FFI call on another thread) would then point at whatever moved in. Seen as NVRTC
 * options read as garbage (ptxas's report missing from logs) under `deno test --parallel`.
 */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = enc.encode(s + "\0");
  const out = new Uint8Array(new ArrayBuffer(b.length));
  out.set(b);
  return out;
}

/** Read a NUL-terminated string at `p` ("" for null). */
export function readCString(p: Deno.PointerValue): string {
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

/** Address of a typed array's first byte as a bigint. */
export function addressOf(buf: ArrayBufferView<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * An array of C string pointers (`const char* const*`). The strings are kept on the returned object
 * so they stay alive as long as it does.
 */
export function cstrArray(
  strings: readonly string[],
): { ptrs: BigUint64Array<ArrayBuffer>; keep: Uint8Array[] } {
  const keep = strings.map(cstr);
  const ptrs = new BigUint64Array(new ArrayBuffer(8 * Math.max(1, keep.length))); // off-heap: see cstr
  keep.forEach((b, i) => (ptrs[i] = addressOf(b)));
  return { ptrs, keep };
}

/** Pointer object for a handle stored in a u64 out-parameter. */
export function handle(out: BigUint64Array, i = 0): Deno.PointerObject {
  const p = Deno.UnsafePointer.create(out[i]);
  if (p === null) throw new Error("driver returned a null handle");
  return p;
}
