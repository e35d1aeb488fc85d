/**
 * Host-side SASS checks for the compile tier: find cuobjdump, disassemble a cubin, and read its
 * instruction stream (opcode histogram, loops, named barriers) — so tests can assert what the hardware
 * will execute without a GPU.
 */

/** Where cuobjdump is: `KILN_CUOBJDUMP`, the CUDA toolkit, PATH, or the pip wheel's copy. */
export function sassTool(): string | undefined {
  const home = Deno.env.get("HOME") ?? "";
  const candidates = [
    Deno.env.get("KILN_CUOBJDUMP"),
    "/usr/local/cuda/bin/cuobjdump",
    ...(Deno.env.get("PATH") ?? "").split(":").map((d) => `${d}/cuobjdump`),
    ...[`${home}/.local/lib`, "/usr/local/lib", "/usr/lib"].flatMap((d) =>
      ["3.10", "3.11", "3.12", "3.13"].map((v) => `${d}/python${v}/site-packages/nvidia/cu13/bin/cuobjdump`)
    ),
  ];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* next */ }
  }
  return undefined;
}

/** One SASS instruction: address, guard predicate (`@!P0`, or ""), opcode with modifiers, operands. */
export interface SassInstr {
  addr: number;
  pred: string;
  op: string;
  args: string;
}

/** The instructions of `cuobjdump -sass` text, in address order. */
export function sassInstructions(text: string): SassInstr[] {
  const re = /^\s+\/\*([0-9a-f]{4,})\*\/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\s*([^;]*);/;
  const out: SassInstr[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(re);
    if (m) out.push({ addr: parseInt(m[1], 16), pred: (m[2] ?? "").trim(), op: m[3], args: m[4].trim() });
  }
  return out;
}

/**
 * Opcode histogram of a cubin's SASS (`cuobjdump -sass`), counted both by base opcode (`UTMALDG`) and
 * with its modifiers (`UTMALDG.2D.MULTICAST`); predicates (`@!P0`) are skipped. Also returns the text
 * and the parsed instructions.
 */
export async function sassHistogram(
  cubin: Uint8Array,
  tool: string,
): Promise<{ h: Map<string, number>; text: string; instrs: SassInstr[] }> {
  const f = await Deno.makeTempFile({ suffix: ".cubin" });
  try {
    await Deno.writeFile(f, cubin);
    const out = await new Deno.Command(tool, { args: ["-sass", f], stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(`cuobjdump failed: ${new TextDecoder().decode(out.stderr)}`);
    const text = new TextDecoder().decode(out.stdout);
    const instrs = sassInstructions(text);
    const h = new Map<string, number>();
    for (const i of instrs) {
      for (const k of new Set([i.op, i.op.split(".")[0]])) h.set(k, (h.get(k) ?? 0) + 1);
    }
    return { h, text, instrs };
  } finally {
    await Deno.remove(f).catch(() => {});
  }
}

/** A loop of the SASS: a backward branch at index `end` to the instruction at index `start`. */
export interface SassLoop {
  start: number;
  end: number;
}

/** Every loop (backward `BRA`) whose body contains an instruction matching `op`, innermost first. */
export function loopsContaining(instrs: SassInstr[], op: RegExp): SassLoop[] {
  const at = new Map(instrs.map((x, i) => [x.addr, i] as const));
  const loops: SassLoop[] = [];
  instrs.forEach((x, end) => {
    const m = x.op.startsWith("BRA") ? x.args.match(/^(0x[0-9a-f]+)$/) : null;
    if (!m) return;
    const start = at.get(parseInt(m[1], 16));
    if (start === undefined || start >= end) return;
    if (instrs.slice(start, end + 1).some((y) => op.test(y.op))) loops.push({ start, end });
  });
  return loops.sort((a, b) => (a.end - a.start) - (b.end - b.start));
}

/** A named-barrier instruction: `BAR.SYNC`/`BAR.ARV`, its id operand and thread count (undefined = all). */
export interface SassBarrier {
  index: number;
  kind: "sync" | "arrive";
  id: string;
  threads: number | undefined;
}

/** The named barriers of the stream (`BAR.SYNC[.DEFER_BLOCKING] id[, count]`, `BAR.ARV id, count`). */
export function sassBarriers(instrs: SassInstr[]): SassBarrier[] {
  const out: SassBarrier[] = [];
  instrs.forEach((x, index) => {
    const kind = /^BAR\.SYNC/.test(x.op) ? "sync" : /^BAR\.ARV/.test(x.op) ? "arrive" : undefined;
    if (!kind) return;
    const [id, count] = x.args.split(",").map((s) => s.trim());
    out.push({ index, kind, id, threads: count === undefined ? undefined : parseInt(count, 16) });
  });
  return out;
}
