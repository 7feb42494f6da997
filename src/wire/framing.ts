/**
 * Length-prefixed framing on byte streams: each frame is a 4-byte big-endian length and
 * that many bytes. The reader enforces the frame size cap on the announced length, before
 * buffering anything, and a deadline for finishing a frame once it has started, so a peer
 * that trickles bytes cannot hold a stream open forever.
 *
 * @module
 */
import { MAX_FRAME_BYTES } from "../limits.ts";
import { TransportError, ValidationError } from "../errors.ts";

/** Options for {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest frame accepted (default {@link MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
  /** Deadline to complete a frame once its first byte arrived, in ms (default: none). */
  frameTimeoutMs?: number;
}

/** Reads whole frames from a byte stream. */
export class FrameReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf: Uint8Array = new Uint8Array(0);
  #max: number;
  #timeoutMs: number | undefined;

  constructor(readable: ReadableStream<Uint8Array>, options: FrameReaderOptions = {}) {
    this.#reader = readable.getReader();
    this.#max = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#timeoutMs = options.frameTimeoutMs;
  }

  /**
   * Next frame, or `null` at a clean end of stream. Throws {@link ValidationError} (code
   * `too_large`) for an oversize announcement, {@link TransportError} for a stream that
   * ends inside a frame or misses the frame deadline.
   */
  async next(): Promise<Uint8Array | null> {
    let deadline: number | undefined;
    while (true) {
      if (this.#buf.length >= 4) {
        const len = new DataView(this.#buf.buffer, this.#buf.byteOffset, 4).getUint32(0);
        if (len > this.#max) {
          throw new ValidationError(
            `Frame of ${len} bytes exceeds the limit of ${this.#max} bytes`,
            { code: "too_large" },
          );
        }
        if (this.#buf.length >= 4 + len) {
          const frame = this.#buf.slice(4, 4 + len);
          this.#buf = this.#buf.subarray(4 + len);
          return frame;
        }
      }
      if (this.#buf.length > 0 && deadline === undefined && this.#timeoutMs !== undefined) {
        deadline = Date.now() + this.#timeoutMs;
      }
      const chunk = await this.#read(deadline);
      if (chunk === null) {
        if (this.#buf.length === 0) return null;
        throw new TransportError("Stream ended in the middle of a frame");
      }
      this.#append(chunk);
    }
  }

  async #read(deadline: number | undefined): Promise<Uint8Array | null> {
    if (deadline === undefined) {
      const { value, done } = await this.#reader.read();
      return done ? null : value;
    }
    const left = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TransportError("Peer took too long to send a frame", { code: "timeout" })),
        Math.max(0, left),
      );
    });
    try {
      const { value, done } = await Promise.race([this.#reader.read(), timeout]);
      return done ? null : value;
    } finally {
      clearTimeout(timer);
    }
  }

  #append(chunk: Uint8Array): void {
    if (this.#buf.length === 0) {
      this.#buf = chunk;
      return;
    }
    const next = new Uint8Array(this.#buf.length + chunk.length);
    next.set(this.#buf);
    next.set(chunk, this.#buf.length);
    this.#buf = next;
  }

  /** Stop reading; pending reads resolve as end of stream. */
  async cancel(): Promise<void> {
    try {
      await this.#reader.cancel();
    } catch { /* already closed */ }
  }
}

/** Prefix a frame with its 4-byte big-endian length. */
export function lengthPrefixed(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length);
  out.set(frame, 4);
  return out;
}
