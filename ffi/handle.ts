/** The lifecycle every native handle shares: live until `close()`, closable twice, disposable. */
import { FastpathError } from "./error.ts";

export abstract class NativeHandle implements Disposable, AsyncDisposable {
  #handle: Deno.PointerValue;

  protected constructor(handle: Deno.PointerObject, readonly kind: string) {
    this.#handle = handle;
  }

  /** Frees the native side; called once. */
  protected abstract free(handle: Deno.PointerObject): void;

  /** The native pointer, or a FastpathError once closed. */
  protected live(): Deno.PointerObject {
    if (this.#handle === null) throw new FastpathError("failed", `the ${this.kind} is closed`);
    return this.#handle;
  }

  protected get open(): boolean {
    return this.#handle !== null;
  }

  /** Stops everything and frees every native resource. Safe to call twice. */
  close(): void {
    if (this.#handle === null) return;
    this.free(this.#handle);
    this.#handle = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
