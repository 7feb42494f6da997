/**
 * Length-prefixed framing on byte streams: each frame is a 4-byte big-endian length and
 * that many bytes. The reader enforces the frame size cap on the announced length, before
 * buffering anything, and a deadline for finishing a frame once it has started, so a peer
 * that trickles bytes cannot hold a stream open forever.
 *
 * @module
 */
import { FRAME_READ_CHUNK_BYTES, FRAME_READ_IDLE_BYTES, MAX_FRAME_BYTES } from "../limits.ts";
import { TransportError, ValidationError } from "../errors.ts";

/** Options for {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest frame accepted (default {@link MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
  /** Deadline to complete a frame once its first byte arrived, in ms (default: none). */
  frameTimeoutMs?: number;
}

/**
 * Reads whole frames from a byte stream. Chunks are kept as they arrive and joined once,
 * when a frame is complete, so the work per frame is linear in its size however the peer
 * splits it (joining on every chunk was quadratic: a 1 MiB frame in 100-byte chunks cost
 * 1.3 s of CPU). On a byte stream (QUIC) it reads into buffers of its own size: small
 * while waiting for a frame, since an idle stream's pending read holds its buffer (Deno's
 * default is 64 KiB, most of an idle connection's memory), up to the rest of the frame after.
 * Frames are returned as copies, never as views of a read buffer, so the buffer of a read
 * that left nothing behind serves the next wait for a frame (one allocation per frame less).
 */
export class FrameReader {
  #reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader;
  #byob: boolean;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #max: number;
  #timeoutMs: number | undefined;
  /** The buffer of the last read, once every byte of it was taken (a byte stream only). */
  #spare: ArrayBuffer | undefined;
  /** The last chunk read. */
  #last: Uint8Array | undefined;

  constructor(readable: ReadableStream<Uint8Array>, options: FrameReaderOptions = {}) {
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = readable.getReader({ mode: "byob" });
    } catch { /* not a byte stream */ }
    this.#byob = byob !== undefined;
    this.#reader = byob ?? readable.getReader();
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
      if (this.#size >= 4) {
        const len = this.#announced();
        if (len > this.#max) {
          throw new ValidationError(
            `Frame of ${len} bytes exceeds the limit of ${this.#max} bytes`,
            { code: "too_large" },
          );
        }
        if (this.#size >= 4 + len) {
          this.#drop(4);
          const frame = this.#take(len, true);
          if (this.#size === 0 && this.#byob) this.#spare = this.#last?.buffer as ArrayBuffer;
          return frame;
        }
      }
      if (this.#size > 0 && deadline === undefined && this.#timeoutMs !== undefined) {
        deadline = Date.now() + this.#timeoutMs;
      }
      const chunk = await this.#read(deadline);
      if (chunk === null) {
        if (this.#size === 0) return null;
        throw new TransportError("Stream ended in the middle of a frame");
      }
      if (chunk.length > 0) {
        this.#last = chunk;
        this.#chunks.push(chunk);
        this.#size += chunk.length;
      }
    }
  }

  /** The length the next frame announces (its first 4 bytes, buffered: size >= 4). */
  #announced(): number {
    const first = this.#chunks[0]!;
    if (first.length >= 4) {
      return ((first[0]! << 24) | (first[1]! << 16) | (first[2]! << 8) | first[3]!) >>> 0;
    }
    const head = this.#take(4, false);
    return new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
  }

  /** The first `n` buffered bytes (n <= size) as one array; removed when `consume`. */
  #take(n: number, consume: boolean): Uint8Array {
    const first = this.#chunks[0];
    let out: Uint8Array;
    if (first !== undefined && first.length >= n) {
      out = first.slice(0, n);
    } else {
      out = new Uint8Array(n);
      let o = 0;
      for (const c of this.#chunks) {
        const k = Math.min(c.length, n - o);
        out.set(c.subarray(0, k), o);
        o += k;
        if (o === n) break;
      }
    }
    if (consume) this.#drop(n);
    return out;
  }

  /** Remove the first `n` buffered bytes (n <= size). */
  #drop(n: number): void {
    let left = n;
    let whole = 0; // chunks used up entirely, dropped in one splice (shift is O(length))
    while (left > 0 && this.#chunks[whole]!.length <= left) left -= this.#chunks[whole++]!.length;
    if (whole > 0) this.#chunks.splice(0, whole);
    if (left > 0) this.#chunks[0] = this.#chunks[0]!.subarray(left);
    this.#size -= n;
  }

  /** One read: into a buffer sized for what is awaited on a byte stream. */
  async #readOnce(): Promise<Uint8Array | null> {
    if (!this.#byob) {
      const { value, done } = await (this.#reader as ReadableStreamDefaultReader<Uint8Array>)
        .read();
      return done ? null : value;
    }
    let size = FRAME_READ_IDLE_BYTES;
    if (this.#size >= 4) {
      size = Math.max(1, Math.min(FRAME_READ_CHUNK_BYTES, 4 + this.#announced() - this.#size));
    }
    const spare = this.#spare;
    this.#spare = undefined;
    const { value, done } = await (this.#reader as ReadableStreamBYOBReader)
      .read(spare?.byteLength === size ? new Uint8Array(spare) : new Uint8Array(size));
    return done || value === undefined ? null : value;
  }

  #read(deadline: number | undefined): Promise<Uint8Array | null> {
    // no deadline (waiting between frames): the read itself, without another async frame
    return deadline === undefined ? this.#readOnce() : this.#readBy(deadline);
  }

  async #readBy(deadline: number): Promise<Uint8Array | null> {
    const left = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TransportError("Peer took too long to send a frame", { code: "timeout" })),
        Math.max(0, left),
      );
    });
    try {
      return await Promise.race([this.#readOnce(), timeout]);
    } finally {
      clearTimeout(timer);
    }
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
