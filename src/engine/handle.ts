// What starting, running, exec'ing and attaching give back to the caller.
import type { Readable, Writable } from "node:stream";

/** A started container: its streams (attached, stdio "pipe") and its exit. */
export class ContainerHandle {
  private exited: Promise<number> | null = null;
  constructor(
    readonly id: string,
    readonly name: string,
    readonly stdin: Writable | null,
    readonly stdout: Readable | null,
    readonly stderr: Readable | null,
    private readonly waitFor: () => Promise<number>,
  ) {}
  /** Resolves with the exit code (128+N for signal N) once the container has exited. */
  wait(): Promise<number> {
    this.exited ??= this.waitFor();
    return this.exited;
  }
}

export interface AttachResult {
  id: string;
  /** The detach keys were typed: the container runs on. */
  detached: boolean;
  /** The container's exit code, once it has exited. */
  exitCode: number | null;
}
