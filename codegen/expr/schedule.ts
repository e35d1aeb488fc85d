/**
 * How a row program is mapped onto the GPU (the "how" beside the program's "what", as in Halide).
 *
 * A row is cut into tiles of `tile = chunks · lanes · vec` elements. A team of `lanes` threads owns a
 * tile; thread `l` holds chunks `c = 0 .. chunks-1` of `vec` consecutive elements at
 * `col0 + (c · lanes + l) · vec`, so consecutive threads read consecutive 16-byte vectors (coalesced)
 * and every thread has `chunks` loads in flight. A team is a sub-warp, a warp, or the whole CTA
 * (reductions across a CTA team go through shared memory). Reductions must stay inside a tile.
 *
 * @module
 */
import { materialized, type Program } from "../../dsl/expr/program.ts";
import type { ReduceTree } from "../../dsl/expr/interpret.ts";
import type { LoadArg, ReduceArg } from "../../dsl/expr/node.ts";
import { dtypeInfo } from "../../dsl/dtype.ts";

/** A schedule (all compile-time). */
export interface Schedule extends ReduceTree {
  /** Elements per chunk (one vector access). */
  readonly vec: number;
  /** Threads per tile: a power of two ≤ 32, or equal to `threads`. */
  readonly lanes: number;
  /** Chunks per thread. */
  readonly chunks: number;
  /** Threads per CTA (a multiple of `lanes`). */
  readonly threads: number;
  /**
   * Consecutive teams take this many consecutive rows of the same column tile before moving to the
   * next tile (default 1: a row's tiles first). With several teams per warp it makes per-group stores
   * to M-major outputs land in one 32-byte sector.
   */
  readonly rowBlock?: number;
}

/** Numbers derived from a schedule for one program. */
export interface Tiling {
  /** Elements per tile. */
  tile: number;
  /** Elements a team covers in one round (lanes · vec). */
  span: number;
  /** Tiles per row. */
  colTiles: number;
  /** Teams (tiles in flight) per CTA. */
  teams: number;
  /** True when every chunk of every tile is inside the row (no column predicate needed). */
  full: boolean;
}

const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Derive the tiling of `program` under `s`. */
export function tiling(program: Program, s: Schedule): Tiling {
  const span = s.lanes * s.vec, tile = span * s.chunks;
  const colTiles = Math.ceil(program.width / tile);
  return { tile, span, colTiles, teams: s.threads / s.lanes, full: program.width % tile === 0 };
}

/** The smallest element size among the program's vector-loaded inputs and full-length stores. */
function minElemBytes(program: Program): number {
  let b = 4;
  for (const n of program.nodes) {
    if (n.op === "load" && n.len === program.width) {
      b = Math.min(b, dtypeInfo((n.arg as LoadArg).input.dtype).bits / 8);
    }
  }
  return b;
}

/** Reduction group sizes of the program (in row elements). */
export function reduceGroups(program: Program): number[] {
  return program.nodes.filter((n) => n.op === "reduce").map((n) => (n.arg as ReduceArg).group);
}

/** Throw a clear error when `s` cannot run `program`. */
export function checkSchedule(program: Program, s: Schedule): void {
  const bad = (why: string): never => {
    throw new RangeError(`schedule ${JSON.stringify(s)} cannot run ${program.name}: ${why}`);
  };
  if (!pow2(s.vec) || s.vec > 32) bad("vec must be a power of two ≤ 32");
  if (!(pow2(s.lanes) && s.lanes <= 32) && s.lanes !== s.threads) {
    bad("lanes must be a power of two ≤ 32, or = threads");
  }
  if (!pow2(s.lanes)) bad("lanes must be a power of two");
  if (!Number.isInteger(s.chunks) || s.chunks < 1 || s.chunks > 32) bad("chunks must be in [1, 32]");
  if (s.threads % 32 !== 0 || s.threads > 1024 || s.threads % s.lanes !== 0) {
    bad("threads must be a multiple of 32 (≤ 1024) and of lanes");
  }
  const rb = s.rowBlock ?? 1;
  if (!pow2(rb) || rb > s.threads / s.lanes) bad("rowBlock must be a power of two ≤ teams per CTA");
  const W = program.width;
  if (W % s.vec !== 0) bad(`the row width ${W} is not a multiple of vec`);
  const t = tiling(program, s);
  for (const n of materialized(program.stores.map((st) => st.value))) {
    if (n.op === "reduce") {
      const G = (n.arg as ReduceArg).group * (W / n.src[0].len);
      if (n.src[0].len !== W) bad(`reductions need a full-length operand (${n.src[0].len} of ${W})`);
      if (G === W) {
        if (t.colTiles !== 1) bad(`a whole-row reduction needs one tile per row (tile ${t.tile} < ${W})`);
        continue;
      }
      if (!pow2(G)) bad(`group ${G} must be a power of two (or the whole row)`);
      if (G > s.vec && t.tile % G !== 0) bad(`group ${G} must divide the tile (${t.tile})`);
      if (G > t.span && G % t.span !== 0) bad(`group ${G} must be a multiple of lanes·vec (${t.span})`);
    }
    if (n.op === "load") {
      const a = n.arg as LoadArg;
      if (n.len === W && a.input.kind !== "scalar" && (a.col % s.vec !== 0 || a.input.width % s.vec !== 0)) {
        bad(`input ${a.input.name}: its columns (${a.col}, width ${a.input.width}) must be multiples of vec`);
      }
    }
    if (n.op === "concat") {
      let off = 0;
      for (const p of n.src) {
        if (off % s.vec !== 0) bad("concat parts must start at multiples of vec");
        off += p.len;
      }
    }
  }
  for (const st of program.stores) {
    if (st.value.len === W && st.layout === "row" && (st.col % s.vec !== 0 || st.width % s.vec !== 0)) {
      bad(`store ${st.output}: column ${st.col} and width ${st.width} must be multiples of vec`);
    }
    if (dtypeInfo(st.dtype).packing === 2 && st.value.len !== W) {
      bad(`store ${st.output}: 4-bit stores must be full-length`);
    }
    if (dtypeInfo(st.dtype).packing === 2 && s.vec < 2) bad("4-bit stores need vec ≥ 2");
  }
}

/** A reasonable default: 16-byte loads, a team per row sized to the row, up to 8 chunks per thread. */
export function defaultSchedule(program: Program): Schedule {
  const W = program.width;
  let vec = Math.max(1, Math.min(16 / minElemBytes(program), 16));
  while (W % vec !== 0) vec /= 2;
  const rowReduce = reduceGroups(program).some((g) => g === W) ||
    program.nodes.some((n) => n.op === "reduce" && (n.arg as ReduceArg).group === n.src[0].len);
  const vecs = W / vec;
  const biggest = Math.max(
    vec,
    ...program.nodes.filter((n) => n.op === "reduce").map((n) => (n.arg as ReduceArg).group),
  );
  if (rowReduce) {
    // one team owns the whole row: lanes · chunks ≥ vecs, chunks ≤ 8
    let lanes = 32;
    while (lanes * 8 < vecs && lanes < 1024) lanes *= 2;
    while (lanes > 1 && lanes / 2 >= vecs) lanes /= 2;
    const chunks = Math.ceil(vecs / lanes);
    return { vec, lanes, chunks, threads: Math.max(32, lanes > 32 ? lanes : 256) };
  }
  // groups only: a warp per tile, tiles of whole groups, up to 4 chunks per thread
  let lanes = 32;
  while (lanes > 1 && lanes > vecs) lanes /= 2;
  const span = lanes * vec;
  let chunks = 1;
  while (chunks < 4 && W % (span * chunks * 2) === 0) chunks *= 2;
  while ((span * chunks) % biggest !== 0 && biggest > span) chunks *= 2;
  return { vec, lanes, chunks, threads: 256 };
}
