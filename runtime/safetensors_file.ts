/**
 * safetensors files on disk: open one and read only its header, list its tensors, read one tensor into
 * host memory (a seek and a read, nothing else), read a sharded checkpoint through
 * `model.safetensors.index.json`, and read a tensor straight into a device tensor.
 *
 * @example
 * ```ts ignore
 * import { openCheckpoint } from "./safetensors_file.ts";
 * using ckpt = await openCheckpoint("/models/DeepSeek-V3");
 * const w = await ckpt.read("model.layers.0.self_attn.q_a_proj.weight"); // { dtype: "fp8e4m3", shape, data }
 * ```
 * @module
 */
import type { DType, HostArray } from "../dsl/dtype.ts";
import type { Tensor } from "./tensor.ts";
import {
  parseSafetensorsHeader,
  readHeaderLength,
  SafetensorsError,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  tensorInfo,
  toHostArray,
} from "../dsl/safetensors.ts";

/** A tensor read into host memory. */
export interface HostTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

/** The part of `runtime/tensor.ts` this file uses (loaded lazily, so this file works without it). */
export interface TensorModule {
  readonly Tensor: {
    fromHost(dtype: DType, shape: number[], raw: HostArray, opts?: { device?: unknown }): unknown;
  };
}

/** Options for reading into a device tensor. */
export interface ToDeviceOptions {
  /** The device (a `Device` of runtime/device.ts); the default device when absent. */
  readonly device?: unknown;
  /** The tensor module to use instead of `./tensor.ts` (tests). */
  readonly tensorModule?: TensorModule;
}

async function loadTensorModule(): Promise<TensorModule> {
  // A computed specifier: type-checking does not need tensor.ts to exist yet.
  const spec = new URL("./tensor.ts", import.meta.url).href;
  return await import(spec) as TensorModule;
}

async function readFully(
  file: Deno.FsFile,
  pos: number,
  length: number,
  path: string,
  tensor: string | null,
): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await file.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < length) {
    const n = await file.read(buf.subarray(off));
    if (n === null || n === 0) {
      throw new SafetensorsError(
        path,
        tensor,
        `truncated file: wanted ${length} bytes at offset ${pos}, got ${off}`,
      );
    }
    off += n;
  }
  return buf;
}

/** One open safetensors file. Only the header is read at open; tensors are read on demand. */
export class SafetensorsFile implements Disposable {
  #file: Deno.FsFile | null;

  private constructor(readonly path: string, file: Deno.FsFile, readonly header: SafetensorsHeader) {
    this.#file = file;
  }

  /** Open `path` and read and validate its header. */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const first = await readFully(file, 0, Math.min(8, size), path, null);
      const n = readHeaderLength(first, size, path);
      const json = await readFully(file, 8, n, path, null);
      return new SafetensorsFile(path, file, parseSafetensorsHeader(json, size, path));
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Tensor infos in header order. */
  list(): readonly SafetensorsTensorInfo[] {
    return this.header.tensors;
  }

  /** Tensor names in header order. */
  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  /** True when the file holds `name`. */
  has(name: string): boolean {
    return this.header.tensors.some((t) => t.name === name);
  }

  /** The info of `name` (throws SafetensorsError naming the file and tensor otherwise). */
  info(name: string): SafetensorsTensorInfo {
    return tensorInfo(this.header, name);
  }

  /** The raw bytes of one tensor. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    if (!this.#file) throw new SafetensorsError(this.path, name, "file is closed");
    return await readFully(this.#file, this.header.dataOffset + t.begin, t.end - t.begin, this.path, name);
  }

  /** One tensor in host memory, as kiln raw storage (codes for fp8/bf16/f16). */
  async read(name: string): Promise<HostTensor> {
    const t = this.info(name);
    const bytes = await this.readBytes(name);
    return Object.freeze({ name, dtype: t.kilnDType, shape: t.shape, data: toHostArray(t.kilnDType, bytes) });
  }

  /** One tensor uploaded to a device tensor through `Tensor.fromHost` (runtime/tensor.ts). */
  async readToDevice(name: string, opts: ToDeviceOptions = {}): Promise<Tensor> {
    const host = await this.read(name);
    const mod = opts.tensorModule ?? await loadTensorModule();
    return mod.Tensor.fromHost(
      host.dtype,
      [...host.shape],
      host.data,
      opts.device === undefined ? undefined : { device: opts.device },
    ) as Tensor;
  }

  /** Close the file (idempotent). */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Read only the header of a safetensors file. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  using f = await SafetensorsFile.open(path);
  return f.header;
}

/** The name of the index file of a sharded checkpoint. */
export const INDEX_FILE = "model.safetensors.index.json";

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/**
 * A checkpoint of one or more safetensors files: a sharded one through its index, or every
 * `*.safetensors` file of a directory. Every tensor the index lists must be in the shard it names.
 */
export class SafetensorsCheckpoint implements Disposable {
  readonly #where = new Map<string, SafetensorsFile>();

  private constructor(
    readonly dir: string,
    readonly files: readonly SafetensorsFile[],
    readonly indexPath: string | null,
  ) {
    for (const f of files) for (const n of f.names()) if (!this.#where.has(n)) this.#where.set(n, f);
  }

  /**
   * Open a checkpoint: `path` is a model directory (with `model.safetensors.index.json`, or with
   * `*.safetensors` files), an index file, or a single `.safetensors` file.
   */
  static async open(path: string): Promise<SafetensorsCheckpoint> {
    const st = await Deno.stat(path);
    if (st.isFile && path.endsWith(".safetensors")) {
      const f = await SafetensorsFile.open(path);
      return new SafetensorsCheckpoint(path.slice(0, path.lastIndexOf("/") + 1) || ".", [f], null);
    }
    const indexPath = st.isFile ? path : join(path, INDEX_FILE);
    const dir = st.isFile ? (path.slice(0, path.lastIndexOf("/")) || ".") : path;
    let index: unknown = null;
    try {
      index = JSON.parse(await Deno.readTextFile(indexPath));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || st.isFile) {
        throw new SafetensorsError(indexPath, null, `cannot read the index: ${(e as Error).message}`);
      }
    }
    if (index === null) {
      const names: string[] = [];
      for await (const ent of Deno.readDir(dir)) {
        if (ent.isFile && ent.name.endsWith(".safetensors")) names.push(ent.name);
      }
      if (names.length === 0) {
        throw new SafetensorsError(dir, null, `no ${INDEX_FILE} and no .safetensors files`);
      }
      names.sort();
      return new SafetensorsCheckpoint(dir, await openAll(names.map((n) => join(dir, n))), null);
    }
    const wm = (index as { weight_map?: unknown })?.weight_map;
    if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
      throw new SafetensorsError(indexPath, null, "weight_map must be an object of tensor name → shard file");
    }
    const shards = new Map<string, string[]>();
    for (const [tensor, shard] of Object.entries(wm)) {
      if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
        throw new SafetensorsError(
          indexPath,
          tensor,
          `weight_map entry must be a shard file name, got ${JSON.stringify(shard)}`,
        );
      }
      shards.set(shard, [...(shards.get(shard) ?? []), tensor]);
    }
    const files = await openAll([...shards.keys()].map((s) => join(dir, s)));
    for (const f of files) {
      for (const tensor of shards.get(f.path.slice(f.path.lastIndexOf("/") + 1))!) {
        if (!f.has(tensor)) {
          for (const g of files) g.close();
          throw new SafetensorsError(f.path, tensor, `listed in ${INDEX_FILE} but missing from this shard`);
        }
      }
    }
    const ckpt = new SafetensorsCheckpoint(dir, files, indexPath);
    // The index decides which shard holds a name.
    for (const [tensor, shard] of Object.entries(wm as Record<string, string>)) {
      ckpt.#where.set(tensor, files.find((f) => f.path === join(dir, shard))!);
    }
    return ckpt;
  }

  /** All tensor names (index order, or file order). */
  names(): string[] {
    return [...this.#where.keys()];
  }

  /** The file that holds `name`. */
  fileOf(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (!f) throw new SafetensorsError(this.indexPath ?? this.dir, name, "no such tensor in this checkpoint");
    return f;
  }

  /** The info of one tensor. */
  info(name: string): SafetensorsTensorInfo {
    return this.fileOf(name).info(name);
  }

  /** One tensor in host memory. */
  read(name: string): Promise<HostTensor> {
    return this.fileOf(name).read(name);
  }

  /** One tensor uploaded to a device tensor. */
  readToDevice(name: string, opts: ToDeviceOptions = {}): Promise<Tensor> {
    return this.fileOf(name).readToDevice(name, opts);
  }

  /** Close every file. */
  close(): void {
    for (const f of this.files) f.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

async function openAll(paths: readonly string[]): Promise<SafetensorsFile[]> {
  const out: SafetensorsFile[] = [];
  try {
    for (const p of paths) out.push(await SafetensorsFile.open(p));
  } catch (e) {
    for (const f of out) f.close();
    throw e;
  }
  return out;
}

/** Open a checkpoint (see {@linkcode SafetensorsCheckpoint.open}). */
export function openCheckpoint(path: string): Promise<SafetensorsCheckpoint> {
  return SafetensorsCheckpoint.open(path);
}

/**
 * Tensor names of a model directory without opening shards when an index exists (the index's
 * `weight_map` keys), else from the headers of its `.safetensors` files. Null when there are neither.
 */
export async function checkpointTensorNames(dir: string): Promise<string[] | null> {
  const indexPath = join(dir, INDEX_FILE);
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(indexPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (text !== null) {
    let wm: unknown;
    try {
      wm = JSON.parse(text)?.weight_map;
    } catch (e) {
      throw new SafetensorsError(indexPath, null, `not valid JSON: ${(e as Error).message}`);
    }
    if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
      throw new SafetensorsError(indexPath, null, "weight_map must be an object of tensor name → shard file");
    }
    return Object.keys(wm);
  }
  const names: string[] = [];
  const files: string[] = [];
  for await (const ent of Deno.readDir(dir)) {
    if (ent.isFile && ent.name.endsWith(".safetensors")) files.push(ent.name);
  }
  if (files.length === 0) return null;
  for (const f of files.sort()) {
    names.push(...(await readSafetensorsHeader(join(dir, f))).tensors.map((t) => t.name));
  }
  return names;
}
