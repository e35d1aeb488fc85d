/**
 * Test tiers. `gpuTest` registers a test named "gpu: ..." that is ignored (and says why, once) when
 * there is no CUDA device; `compileTest` a "compile: ..." test that needs only libnvrtc.
 */
import { devices } from "../runtime/device.ts";
import { hasNvrtc } from "../runtime/nvrtc.ts";

const found = devices();
/** True when a CUDA device is usable here. */
export const GPU: boolean = found.devices.length > 0;
/** True when NVRTC can be loaded here. */
export const NVRTC: boolean = hasNvrtc();

let saidGpu = false, saidNvrtc = false;

/** A GPU-tier test: ignored, visibly, without a device. */
export function gpuTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  if (!GPU && !saidGpu) {
    console.log(`skipped: no CUDA device (${found.reason}) — gpu: tests are ignored`);
    saidGpu = true;
  }
  Deno.test({
    name: `gpu: ${name}`,
    ignore: !GPU,
    fn: unwrapSuppressed(fn),
    sanitizeResources: false,
    sanitizeOps: false,
  });
}

/**
 * `using` turns an error thrown while disposing after a failure into a SuppressedError whose message
 * hides the failure itself; show both.
 */
function unwrapSuppressed(
  fn: (t: Deno.TestContext) => void | Promise<void>,
): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      if (!(e instanceof SuppressedError)) throw e;
      // nested `using` scopes nest SuppressedErrors: the innermost `suppressed` is the first failure
      let first: unknown = e;
      const later: string[] = [];
      while (first instanceof SuppressedError) {
        later.push((first.error as Error)?.message ?? String(first.error));
        first = first.suppressed;
      }
      const f = first as Error;
      throw new Error(`${f?.stack ?? f}\n(then, while disposing: ${later.reverse().join("; ")})`, {
        cause: f,
      });
    }
  };
}

/** A compile-tier test: ignored, visibly, without libnvrtc. */
export function compileTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  if (!NVRTC && !saidNvrtc) {
    console.log("skipped: no NVRTC library — compile: tests are ignored (set KILN_NVRTC_LIB)");
    saidNvrtc = true;
  }
  Deno.test({ name: `compile: ${name}`, ignore: !NVRTC, fn, sanitizeResources: false, sanitizeOps: false });
}

/** Architectures the compile tier builds for, by the kernel's claims. */
export function archsFor(minArch: number, archSpecific = false): string[] {
  if (archSpecific) return ["sm_90a"];
  // sm_90, not sm_90a: what the runtime compiles a kernel without arch-specific features for on Hopper
  return [["sm_80", 80], ["sm_89", 89], ["sm_90", 90]].filter(([, cc]) => (cc as number) >= minArch).map((
    [a],
  ) => a as string);
}
