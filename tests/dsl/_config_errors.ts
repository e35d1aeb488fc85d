/** Shared assertion of the quant-config tests: a ConfigError (or subclass) at a JSON path. */
import assert from "node:assert/strict";
import { ConfigError } from "../../dsl/quant/mod.ts";

/** Assert `fn` throws `cls` whose `path` is `path` and whose message contains `text`. */
export function throwsAt(
  fn: () => unknown,
  path: string,
  text: string,
  cls: typeof ConfigError = ConfigError,
): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.equal((e as ConfigError).path, path);
    assert.ok((e as Error).message.includes(text), `"${(e as Error).message}" should contain "${text}"`);
    return true;
  });
}
