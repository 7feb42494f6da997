/**
 * The qpq wire: typed messages generated from schemas/qpq.capnp, the frame codec,
 * length-prefixed framing, the request/response layer, the message-content codec (the
 * plaintext inside MLS application messages) and the restore notice's payload. The only importer of capnp-es.
 *
 * @module
 */
export * from "./messages.ts";
export {
  decodeFrame,
  encodeFrame,
  encodeFramePrefixed,
  type FrameHeader,
  type OpenedFrame,
  openFrame,
} from "./codec.ts";
export { FrameReader, type FrameReaderOptions, lengthPrefixed } from "./framing.ts";
export {
  checkReaction,
  CONTENT_MESSAGE_ID_BYTES,
  CONTENT_VERSION,
  type ContentBody,
  type ContentKind,
  decodeContent,
  encodeContent,
  type MessageContent,
} from "./content.ts";
export { decodeRestoreNotice, encodeRestoreNotice, type RestoreNoticeValue } from "./notice.ts";
export {
  type EncodedRequest,
  encodedRequest,
  encodeRequestOnce,
  withRequestId,
} from "./encoded.ts";
export {
  type BidiStream,
  type CallOptions,
  FrameWriter,
  type RequestHandler,
  RpcClient,
  type RpcClientOptions,
  SendBudget,
  serveStream,
  type ServeStreamOptions,
  type StreamContext,
} from "./rpc.ts";
