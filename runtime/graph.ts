/**
 * CUDA graphs: capture a sequence of launches on a stream once, replay it with one call.
 *
 * @example
 * ```ts ignore
 * import { Graph } from "./graph.ts";
 * using g = Graph.capture(() => { k1.launch(grid, args1); k2.launch(grid, args2); });
 * g.launch(); // replays both
 * ```
 * @module
 */
import { check, driver } from "./driver.ts";
import { Device, type Stream } from "./device.ts";
import { handle } from "./_c.ts";

/** An instantiated graph. */
export class Graph {
  #graph: Deno.PointerValue;
  #exec: Deno.PointerValue;
  readonly stream: Stream;

  private constructor(graph: Deno.PointerObject, exec: Deno.PointerObject, stream: Stream) {
    this.#graph = graph;
    this.#exec = exec;
    this.stream = stream;
  }

  /**
   * Record everything `fn` queues on `stream` (default: the device's kiln stream) into a graph.
   * Argument values are captured as they are when each launch is recorded.
   */
  static capture(fn: () => void, stream: Stream = Device.get().stream): Graph {
    const cu = driver();
    check(
      cu.cuStreamBeginCapture(stream.handle, 2 /* CU_STREAM_CAPTURE_MODE_RELAXED */),
      "cuStreamBeginCapture_v2",
    );
    const g = new BigUint64Array(1);
    try {
      fn();
    } catch (e) {
      cu.cuStreamEndCapture(stream.handle, g); // leave capture mode before rethrowing
      if (g[0] !== 0n) cu.cuGraphDestroy(Deno.UnsafePointer.create(g[0]));
      throw e;
    }
    check(cu.cuStreamEndCapture(stream.handle, g), "cuStreamEndCapture");
    const graph = handle(g);
    const e = new BigUint64Array(1);
    check(cu.cuGraphInstantiateWithFlags(e, graph, 0n), "cuGraphInstantiateWithFlags");
    return new Graph(graph, handle(e), stream);
  }

  /** Replay the graph on its stream (or `stream`). */
  launch(stream: Stream = this.stream): void {
    check(driver().cuGraphLaunch(this.#exec, stream.handle), "cuGraphLaunch");
  }

  dispose(): void {
    const cu = driver();
    if (this.#exec !== null) check(cu.cuGraphExecDestroy(this.#exec), "cuGraphExecDestroy");
    if (this.#graph !== null) check(cu.cuGraphDestroy(this.#graph), "cuGraphDestroy");
    this.#exec = this.#graph = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
