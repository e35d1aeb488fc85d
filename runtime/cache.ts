/**
 * The disk kernel cache. One file per entry, named by the sha256 key of everything that changes the
 * binary (source, entry, options, arch, NVRTC version and library identity, format version). Files are
 * written to a temporary name and renamed, and carry the cubin's length and sha256: a truncated or
 * corrupted entry is detected on read, reported at `KILN_DEBUG` ≥ 1, and recompiled.
 *
 * File layout: `KILNCUBIN\n` + one JSON line (meta) + the cubin bytes.
 *
 * @module
 */
import { debug, env } from "./env.ts";

/** Bump when the generated code or the cache file layout changes meaning. */
export const CACHE_FORMAT_VERSION = 1;

const MAGIC = "KILNCUBIN\n";

/** Everything that goes into a cache key. */
export interface CacheKeyParts {
  source: string;
  entries: readonly string[];
  options: readonly string[];
  arch: string;
  nvrtc: { major: number; minor: number; library: string };
  extra?: Readonly<Record<string, string | number | boolean>>;
}

/** Stable hex sha256 of the key parts. */
export async function cacheKey(parts: CacheKeyParts): Promise<string> {
  const canonical = JSON.stringify({
    v: CACHE_FORMAT_VERSION,
    source: parts.source,
    entries: parts.entries,
    options: parts.options,
    arch: parts.arch,
    nvrtc: parts.nvrtc,
    extra: parts.extra ? Object.fromEntries(Object.entries(parts.extra).sort()) : {},
  });
  return await sha256Hex(new TextEncoder().encode(canonical));
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The cache directory: `KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`. */
export function cacheDir(): string | undefined {
  const explicit = env("KILN_CACHE_DIR");
  if (explicit) return explicit;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/kiln`;
  const home = env("HOME");
  return home ? `${home}/.cache/kiln` : undefined;
}

/** What a cache entry holds besides the cubin. */
export interface CacheMeta {
  name: string;
  arch: string;
  entries: readonly string[];
  options: readonly string[];
  cubinBytes: number;
  cubinSha256: string;
  created: string;
  log?: string;
}

/** A directory of cache entries. */
export class DiskCache {
  constructor(readonly dir: string) {}

  /** The default cache, or undefined when `KILN_NO_CACHE=1` or no directory can be determined. */
  static default(): DiskCache | undefined {
    if (env("KILN_NO_CACHE") === "1") return undefined;
    const d = cacheDir();
    return d ? new DiskCache(d) : undefined;
  }

  path(key: string): string {
    return `${this.dir}/${key.slice(0, 2)}/${key}.cubin`;
  }

  /** The cubin stored under `key`, or undefined when absent, truncated or corrupt. */
  async get(key: string): Promise<{ cubin: Uint8Array; meta: CacheMeta } | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.path(key));
    } catch {
      return undefined;
    }
    const bad = (why: string) => {
      debug(1, `cache entry ${key.slice(0, 12)} ${why}: recompiling`);
      return undefined;
    };
    const head = new TextDecoder().decode(bytes.subarray(0, MAGIC.length));
    if (head !== MAGIC) return bad("has no kiln header");
    const nl = bytes.indexOf(10, MAGIC.length);
    if (nl < 0) return bad("is truncated in its header");
    let meta: CacheMeta;
    try {
      meta = JSON.parse(new TextDecoder().decode(bytes.subarray(MAGIC.length, nl)));
    } catch {
      return bad("has an unreadable header");
    }
    const cubin = bytes.subarray(nl + 1);
    if (cubin.length !== meta.cubinBytes) {
      return bad(`is truncated (${cubin.length} of ${meta.cubinBytes} bytes)`);
    }
    if ((await sha256Hex(cubin)) !== meta.cubinSha256) return bad("is corrupt (checksum mismatch)");
    return { cubin, meta };
  }

  /** Store `cubin` under `key` atomically. Failures (read-only dir...) are reported, not thrown. */
  async put(
    key: string,
    cubin: Uint8Array,
    meta: Omit<CacheMeta, "cubinBytes" | "cubinSha256" | "created">,
  ): Promise<void> {
    const path = this.path(key);
    const full: CacheMeta = {
      ...meta,
      cubinBytes: cubin.length,
      cubinSha256: await sha256Hex(cubin),
      created: new Date().toISOString(),
    };
    const header = new TextEncoder().encode(MAGIC + JSON.stringify(full) + "\n");
    const out = new Uint8Array(header.length + cubin.length);
    out.set(header);
    out.set(cubin, header.length);
    const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(tmp, out);
      await Deno.rename(tmp, path);
    } catch (e) {
      debug(1, `could not write cache entry ${path}: ${(e as Error).message}`);
      await Deno.remove(tmp).catch(() => {});
    }
  }
}
