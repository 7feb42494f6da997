/**
 * qpq's own request/response layer on length-prefixed Cap'n Proto frames (capnp-es's RPC
 * is not used). One bidirectional stream carries many concurrent requests, matched by
 * request id; the server may also send `push` frames tagged with a subscription's id.
 *
 * ```
 * client                                   server
 *   | -- Frame{id=7, request:ping} --------> |  decode once at the edge
 *   | -- Frame{id=8, request:fetch} -------> |  handlers run concurrently
 *   | <------ Frame{id=8, response:messages} |  (bounded in-flight per stream)
 *   | <------ Frame{id=7, response:pong} --- |
 *   | <------ Frame{id=3, push:messages} --- |  after subscribe (id=3)
 * ```
 *
 * @module
 */
import { encodeFramePrefixed, openFrame } from "./codec.ts";
import { type EncodedRequest, framedWithRequestId } from "./encoded.ts";
import { FrameReader, lengthPrefixed } from "./framing.ts";
import type { Frame, Push, Request, Response, ResponseKind, ResponseOf } from "./messages.ts";
import {
  CLOSE_WAIT_MS,
  FRAME_READ_TIMEOUT_MS,
  MAX_INFLIGHT_PER_CONNECTION,
  REQUEST_TIMEOUT_MS,
  WIRE_VERSION,
} from "../limits.ts";
import {
  errorFromWire,
  InternalError,
  QpqError,
  toQpqError,
  TransportError,
  ValidationError,
} from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";

/** A bidirectional byte stream (a QUIC stream, or anything shaped like one). */
export interface BidiStream {
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * Bytes handed to the streams of one connection that the transport has not taken yet
 * (QUIC takes a stream's bytes as its flow-control window allows, so these are what a
 * peer that does not read makes us hold). Past `maxBytes` the peer is cut off.
 */
export class SendBudget {
  #pending = 0;
  #exceeded = false;
  readonly #max: number;
  readonly #onExceeded: (pending: number) => void;

  /** `onExceeded` runs once, when a write would take the pending bytes past `maxBytes`. */
  constructor(maxBytes: number, onExceeded: (pending: number) => void) {
    this.#max = maxBytes;
    this.#onExceeded = onExceeded;
  }

  /** Bytes written and not yet taken by the transport. */
  get pending(): number {
    return this.#pending;
  }

  /** {@link TransportError} once the budget was exceeded (before encoding anything). */
  check(): void {
    if (this.#exceeded) throw cutOff();
  }

  /** Count `n` bytes about to be written; {@link TransportError} once over the budget. */
  take(n: number): void {
    if (this.#exceeded || this.#pending + n > this.#max) {
      if (!this.#exceeded) {
        this.#exceeded = true;
        this.#onExceeded(this.#pending + n);
      }
      throw cutOff();
    }
    this.#pending += n;
  }

  /** The transport took `n` bytes (or the write failed). */
  give(n: number): void {
    this.#pending -= n;
  }
}

function cutOff(): TransportError {
  return new TransportError("Peer does not read what it is sent: connection cut off", {
    code: "quota",
  });
}

/** Writes frames in order on one stream. */
export class FrameWriter {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #closed = false;
  #budget: SendBudget | undefined;

  constructor(writable: WritableStream<Uint8Array>, budget?: SendBudget) {
    this.#writer = writable.getWriter();
    this.#budget = budget;
  }

  /** Encode and send one frame. */
  async write(frame: Frame): Promise<void> {
    if (this.#closed) throw new TransportError("Connection is closed");
    this.#budget?.check();
    await this.writeFramed(encodeFramePrefixed(frame));
  }

  /** Send already-encoded frame bytes (the length prefix is added here). */
  writeRaw(bytes: Uint8Array): Promise<void> {
    return this.writeFramed(lengthPrefixed(bytes));
  }

  /** Send a frame that already carries its length prefix ({@link encodeFramePrefixed}). */
  async writeFramed(framed: Uint8Array): Promise<void> {
    if (this.#closed) throw new TransportError("Connection is closed");
    this.#budget?.take(framed.length);
    try {
      await this.#writer.write(framed);
    } catch (e) {
      this.#closed = true;
      throw new TransportError("Connection lost while sending", { cause: e });
    } finally {
      this.#budget?.give(framed.length);
    }
  }

  /** Close the sending side. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#writer.close();
    } catch { /* peer already gone */ }
  }
}

function errorResponse(e: QpqError): Response {
  return { kind: "error", code: e.code, message: e.message };
}

// ------------------------------------------------------------------ client

/** Options for {@link RpcClient}. */
export interface RpcClientOptions {
  /** Per-request timeout in ms (default {@link REQUEST_TIMEOUT_MS}). */
  timeoutMs?: number | undefined;
  /** Called with each push frame and the id of the subscription it belongs to. */
  onPush?: ((push: Push, subscriptionId: number) => void) | undefined;
  /** Called once when the stream ends or fails. */
  onClose?: ((error: QpqError | undefined) => void) | undefined;
}

/** Options for one call. */
export interface CallOptions {
  /** Overrides the client's timeout for this call (ms). */
  timeoutMs?: number;
}

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: QpqError) => void;
  /** `performance.now()` past which the call fails with a timeout. */
  deadline: number;
  timeoutMs: number;
}

/** Client side of the RPC layer on one stream. */
export class RpcClient {
  #writer: FrameWriter;
  #reader: FrameReader;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #options: RpcClientOptions;
  #closedError: QpqError | undefined;
  #done: Promise<void>;
  /**
   * One timer for every pending call's deadline, armed for the earliest: a timer per call
   * (created, then cleared by its answer) was the largest cost of a call after the codec.
   * It may outlive the calls it was armed for, until that deadline or {@link close}.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;

  constructor(stream: BidiStream, options: RpcClientOptions = {}) {
    this.#writer = new FrameWriter(stream.writable);
    this.#reader = new FrameReader(stream.readable);
    this.#options = options;
    this.#done = this.#readLoop();
  }

  /** Resolves when the stream has ended. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Allocate a request id (used for subscriptions, whose pushes carry it). */
  nextRequestId(): number {
    return this.#nextId++;
  }

  /**
   * Send a request and wait for its response. Error responses are thrown as the
   * matching {@link QpqError}; a response of another kind than `expect` is a
   * {@link ValidationError}.
   */
  async call<K extends ResponseKind>(
    request: Request | EncodedRequest,
    expect: K,
    options: CallOptions & { requestId?: number } = {},
  ): Promise<ResponseOf<K>> {
    const response = await this.#send(request, options);
    if (response.kind === "error") throw errorFromWire(response.code, response.message);
    if (response.kind !== expect) {
      throw new ValidationError(`Server answered ${response.kind} where ${expect} was expected`);
    }
    return response as ResponseOf<K>;
  }

  #send(
    request: Request | EncodedRequest,
    options: CallOptions & { requestId?: number },
  ): Promise<Response> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const requestId = options.requestId ?? this.nextRequestId();
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? REQUEST_TIMEOUT_MS;
    let bytes: Uint8Array;
    try {
      bytes = "bytes" in request
        ? framedWithRequestId(request, requestId)
        : encodeFramePrefixed({ version: WIRE_VERSION, requestId, type: "request", request });
    } catch (e) {
      return Promise.reject(toQpqError(e));
    }
    return new Promise<Response>((resolve, reject) => {
      const deadline = performance.now() + timeoutMs;
      this.#pending.set(requestId, { resolve, reject, deadline, timeoutMs });
      this.#arm(deadline);
      this.#writer.writeFramed(bytes).catch((e) => {
        const p = this.#pending.get(requestId);
        if (!p) return;
        this.#pending.delete(requestId);
        p.reject(toQpqError(e));
      });
    });
  }

  /** Have the timer fire by `deadline`. */
  #arm(deadline: number): void {
    if (this.#timer !== undefined && this.#timerAt <= deadline) return;
    clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, deadline - performance.now()));
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Fail the calls whose deadline has passed; arm the timer for the next one. */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, p] of this.#pending) {
      // a timer may fire a little early by this clock: 1 ms of slack
      if (p.deadline <= now + 1) {
        this.#pending.delete(id);
        p.reject(
          new TransportError(`Server did not answer within ${p.timeoutMs / 1000} s`, {
            code: "timeout",
          }),
        );
      } else if (p.deadline < next) {
        next = p.deadline;
      }
    }
    if (next < Infinity) this.#arm(next);
  }

  async #readLoop(): Promise<void> {
    let failure: QpqError | undefined;
    try {
      while (true) {
        const bytes = await this.#reader.next();
        if (bytes === null) break;
        const opened = openFrame(bytes);
        if (opened.version !== WIRE_VERSION) {
          throw new ValidationError(
            `Server speaks wire version ${opened.version}; this client speaks ${WIRE_VERSION}`,
            { code: "unsupported_version" },
          );
        }
        const frame = opened.decode();
        if (frame.type === "response") {
          const p = this.#pending.get(frame.requestId);
          if (!p) continue; // answer to a request that already timed out
          this.#pending.delete(frame.requestId);
          p.resolve(frame.response);
        } else if (frame.type === "push") {
          this.#options.onPush?.(frame.push, frame.requestId);
        } else {
          throw new ValidationError("Server sent a request frame");
        }
      }
    } catch (e) {
      failure = e instanceof QpqError ? e : new TransportError("Connection lost", { cause: e });
    }
    this.#closedError = failure ?? new TransportError("Connection closed by the server");
    this.#disarm();
    for (const [, p] of this.#pending) p.reject(this.#closedError);
    this.#pending.clear();
    this.#options.onClose?.(failure);
  }

  /**
   * Close the stream; pending calls fail with a {@link TransportError}. Ends our side, then
   * waits (at most {@link CLOSE_WAIT_MS}) for the server to end its side: proof that our
   * end reached it before a process exiting right after takes the connection down.
   */
  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#done,
      new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    await this.#reader.cancel().catch(() => {});
    await this.#done;
    this.#disarm();
  }
}

// ------------------------------------------------------------------ server

/** What a handler knows about the stream a request came on. */
export interface StreamContext {
  /** Id of the request being handled. */
  readonly requestId: number;
  /** Send a push frame tagged with this request's id (for subscriptions). */
  push(push: Push): Promise<void>;
  /** Aborted when the stream ends. */
  readonly signal: AbortSignal;
}

/** Handles one decoded request; errors thrown become error responses. */
export type RequestHandler = (request: Request, ctx: StreamContext) => Promise<Response>;

/** Options for {@link serveStream}. */
export interface ServeStreamOptions {
  /** Requests handled at once on this stream (default {@link MAX_INFLIGHT_PER_CONNECTION}). */
  maxInflight?: number;
  /** Deadline for a started frame (default {@link FRAME_READ_TIMEOUT_MS}). */
  frameTimeoutMs?: number;
  /** Where to log failures (never request contents). */
  log?: Logger;
  /** Aborting stops reading new requests; in-flight ones finish. */
  signal?: AbortSignal;
  /** Unsent bytes allowed on the connection this stream belongs to (shared by its streams). */
  sendBudget?: SendBudget;
}

/**
 * Serve requests arriving on one stream until it ends. Malformed frames are answered with
 * an error and the stream keeps serving; an oversize or truncated frame ends the stream
 * (framing cannot resynchronise) after an error frame is sent.
 */
export async function serveStream(
  stream: BidiStream,
  handler: RequestHandler,
  options: ServeStreamOptions = {},
): Promise<void> {
  const log = options.log ?? silentLogger;
  const writer = new FrameWriter(stream.writable, options.sendBudget);
  const reader = new FrameReader(stream.readable, {
    frameTimeoutMs: options.frameTimeoutMs ?? FRAME_READ_TIMEOUT_MS,
  });
  const maxInflight = options.maxInflight ?? MAX_INFLIGHT_PER_CONNECTION;
  const ended = new AbortController();
  const inflight = new Set<Promise<void>>();
  const stop = () => reader.cancel();
  options.signal?.addEventListener("abort", stop, { once: true });

  // Never silence: an answer that cannot be encoded (over MAX_FRAME_BYTES: a bug, since
  // every handler bounds its answer) is logged and replaced by an `internal` error answer.
  const reply = async (requestId: number, response: Response) => {
    let bytes: Uint8Array;
    try {
      bytes = encodeFramePrefixed({ version: WIRE_VERSION, requestId, type: "response", response });
    } catch (e) {
      const err = toQpqError(e);
      log.error("response cannot be encoded", { kind: response.kind, code: err.code });
      bytes = encodeFramePrefixed({
        version: WIRE_VERSION,
        requestId,
        type: "response",
        response: errorResponse(
          new InternalError(`The server cannot send its ${response.kind} answer (${err.code})`),
        ),
      });
    }
    try {
      await writer.writeFramed(bytes);
    } catch (e) {
      log.debug("reply failed", { code: toQpqError(e).code });
    }
  };

  const handle = async (requestId: number, request: Request) => {
    let response: Response;
    try {
      response = await handler(request, {
        requestId,
        signal: ended.signal,
        push: (push) => writer.write({ version: WIRE_VERSION, requestId, type: "push", push }),
      });
    } catch (e) {
      const err = toQpqError(e);
      if (err instanceof InternalError) {
        log.error("request failed", {
          kind: request.kind,
          error: String((err.cause as Error | undefined)?.message ?? err.message),
        });
      }
      response = errorResponse(err);
    }
    await reply(requestId, response);
  };

  try {
    while (!options.signal?.aborted) {
      let bytes: Uint8Array | null;
      try {
        bytes = await reader.next();
      } catch (e) {
        const err = toQpqError(e);
        await reply(0, errorResponse(err));
        break;
      }
      if (bytes === null) break;
      let requestId = 0;
      let request: Request;
      try {
        const opened = openFrame(bytes);
        requestId = opened.requestId;
        if (opened.version !== WIRE_VERSION) {
          throw new ValidationError(
            `Unsupported wire version ${opened.version}; this server speaks version ${WIRE_VERSION}`,
            { code: "unsupported_version" },
          );
        }
        const frame = opened.decode();
        if (frame.type !== "request") throw new ValidationError("Expected a request frame");
        request = frame.request;
      } catch (e) {
        await reply(requestId, errorResponse(toQpqError(e)));
        continue;
      }
      const p = handle(requestId, request).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= maxInflight) await Promise.race(inflight);
    }
  } finally {
    options.signal?.removeEventListener("abort", stop);
    await Promise.allSettled(inflight);
    ended.abort();
    await writer.close();
  }
}
