/**
 * The typed view of schemas/qpq.capnp. Each struct of the schema is described once here as
 * a field table; the TypeScript types of requests, responses and pushes are derived from
 * these tables, and the codec walks the same tables to read and write capnp-es objects.
 * A test checks every table against the generated code, so the schema stays the single
 * source of truth for the wire.
 *
 * @module
 */

/** Scalar and composite field kinds used in the tables. */
export type FieldKind =
  | "text"
  | "data"
  | "u64"
  | "u32"
  | "u16"
  | "bool"
  | { readonly enum: readonly string[] }
  | { readonly list: "text" }
  | { readonly list: StructDesc }
  | { readonly struct: StructDesc }
  | { readonly optional: FieldKind };

/** A struct: field name to kind, in schema order. */
export type StructDesc = { readonly [field: string]: FieldKind };

/** A union: member name to struct (or "void"), in schema order. */
export type UnionDesc = { readonly [member: string]: StructDesc | "void" };

/** TypeScript value of a field kind. */
export type FieldValue<F> = F extends "text" ? string
  : F extends "data" ? Uint8Array
  : F extends "u64" | "u32" | "u16" ? number
  : F extends "bool" ? boolean
  : F extends { readonly enum: infer E extends readonly string[] } ? E[number]
  : F extends { readonly list: "text" } ? string[]
  : F extends { readonly list: infer D extends StructDesc } ? StructValue<D>[]
  : F extends { readonly struct: infer D extends StructDesc } ? StructValue<D>
  : never;

type OptionalKeys<D> = {
  [K in keyof D]: D[K] extends { readonly optional: unknown } ? K : never;
}[keyof D];

/**
 * TypeScript value of a struct. Fields appended to the schema after v1.0 are `optional`:
 * a sender may leave them out (they go out as the Cap'n Proto default), a receiver always
 * gets them (empty when the peer did not set them).
 */
export type StructValue<D extends StructDesc> =
  & { -readonly [K in Exclude<keyof D, OptionalKeys<D>>]: FieldValue<D[K]> }
  & {
    -readonly [K in OptionalKeys<D>]?: D[K] extends { readonly optional: infer F } ? FieldValue<F>
      : never;
  };

/** TypeScript value of a union: a `kind` tag plus the member's fields. */
export type UnionValue<U extends UnionDesc> = {
  [K in keyof U & string]: U[K] extends StructDesc ? { kind: K } & StructValue<U[K]>
    : { kind: K };
}[keyof U & string];

const MESSAGE_KIND = {
  enum: ["application", "commit", "welcome", "proposal", "rejoin"],
} as const;
const CHANNEL_KIND = { enum: ["dm", "group"] } as const;

const BLOB = { data: "data" } as const;
const USER_REF = { username: "text" } as const;
/**
 * `UserRef` as fetchKeyPackage reads it: the user and the MLS cipher suite id wanted
 * (0 or absent = any suite, the v1.0 behaviour).
 */
const KEY_PACKAGE_REF = { username: "text", cipherSuite: { optional: "u16" } } as const;
const WELCOME = { username: "text", payload: "data" } as const;
const MESSAGE = {
  seq: "u64",
  channelId: "data",
  sender: "text",
  messageId: "data",
  payload: "data",
  messageKind: MESSAGE_KIND,
  epoch: "u64",
  sentAtMs: "u64",
  channelName: { optional: "text" },
  channelKind: { optional: CHANNEL_KIND },
  serverNotice: { optional: "u16" },
} as const;
const CHANNEL_INFO = {
  channelId: "data",
  channelKind: CHANNEL_KIND,
  name: "text",
  members: { list: "text" },
  epoch: "u64",
} as const;
const ENQUEUED = { duplicate: "bool", recipients: "u32" } as const;

/** The `Request` union of schemas/qpq.capnp. */
export const REQUEST = {
  ping: { clientTimeMs: "u64", payload: "data" },
  health: "void",
  registerStart: { username: "text", request: "data", authToken: "text" },
  registerFinish: { username: "text", record: "data", authToken: "text", identityKey: "data" },
  loginStart: { username: "text", request: "data" },
  loginFinish: { username: "text", finish: "data", loginId: "data" },
  resume: { token: "data" },
  logout: "void",
  publishIdentityKey: { key: "data" },
  fetchIdentityKey: USER_REF,
  uploadKeyPackages: {
    packages: { list: BLOB },
    lastResort: "data",
    lastResorts: { optional: { list: BLOB } },
  },
  fetchKeyPackage: KEY_PACKAGE_REF,
  countKeyPackages: "void",
  enqueue: {
    channelId: "data",
    messageId: "data",
    payload: "data",
    messageKind: MESSAGE_KIND,
    epoch: "u64",
    recipients: { list: "text" },
    ephemeral: { optional: "bool" },
  },
  fetch: { afterSeq: "u64", limit: "u32" },
  ack: { uptoSeq: "u64" },
  subscribe: { afterSeq: "u64" },
  createDm: USER_REF,
  createGroup: { name: "text" },
  listChannels: "void",
  members: { channelId: "data" },
  commit: {
    channelId: "data",
    epoch: "u64",
    messageId: "data",
    payload: "data",
    add: { list: "text" },
    remove: { list: "text" },
    welcomes: { list: WELCOME },
    welcome: { optional: "data" },
    welcomeFor: { optional: { list: "text" } },
  },
  countKeyPackagesForSuite: { cipherSuite: "u16" },
  block: USER_REF,
  unblock: USER_REF,
  logoutEverywhere: "void",
  changePasswordStart: { loginId: "data", finish: "data", request: "data" },
  changePasswordFinish: { changeId: "data", record: "data" },
  listChannelsPage: { after: "data", held: "bool" },
  answerInvitation: { channelId: "data", accept: "bool" },
} as const satisfies UnionDesc;

/** The `Response` union of schemas/qpq.capnp. */
export const RESPONSE = {
  error: { code: "text", message: "text" },
  ok: "void",
  pong: { clientTimeMs: "u64", serverTimeMs: "u64", payload: "data" },
  health: {
    version: "text",
    wireVersion: "u16",
    uptimeSeconds: "u64",
    connectedClients: "u32",
    queueDepth: "u64",
    status: "text",
    reason: "text",
  },
  registerStarted: BLOB,
  loginStarted: { response: "data", loginId: "data" },
  session: { token: "data", expiresAtMs: "u64", username: "text" },
  identityKey: { username: "text", key: "data" },
  keyPackage: BLOB,
  keyPackageCount: { count: "u32" },
  enqueued: ENQUEUED,
  messages: { messages: { list: MESSAGE }, more: "bool" },
  channel: CHANNEL_INFO,
  channels: { channels: { list: CHANNEL_INFO }, more: { optional: "bool" } },
  memberList: { members: { list: "text" } },
  committed: ENQUEUED,
  loggedOut: { count: "u32" },
  passwordChangeStarted: { response: "data", changeId: "data" },
  passwordChanged: { token: "data", expiresAtMs: "u64", sessionsEnded: "u32" },
  unblocked: { count: "u32" },
} as const satisfies UnionDesc;

/** The `Push` struct of schemas/qpq.capnp. */
export const PUSH = { messages: { list: MESSAGE } } as const satisfies StructDesc;

/** A request a client sends. */
export type Request = UnionValue<typeof REQUEST>;
/** A response the server sends. */
export type Response = UnionValue<typeof RESPONSE>;
/** Messages the server pushes on a subscription. */
export type Push = StructValue<typeof PUSH>;
/** One queued message as delivered to a recipient. */
export type DeliveredMessage = StructValue<typeof MESSAGE>;

/** `serverNotice` 1: the owner's KeyPackages run low or its last resort was handed out. */
export const NOTICE_KEY_PACKAGES = 1;
/**
 * `serverNotice` 2: the server was restored from a backup (the payload, a `RestoreNotice`,
 * says which: see notice.ts); at the head of every queue after `qpq server restore`.
 */
export const NOTICE_RESTORED = 2;
/** A channel as the server describes it. */
export type ChannelInfo = StructValue<typeof CHANNEL_INFO>;
/** Kinds of queued message. */
export type MessageKind = typeof MESSAGE_KIND.enum[number];
/** Kinds of channel. */
export type ChannelKind = typeof CHANNEL_KIND.enum[number];
/** Every request kind. */
export type RequestKind = Request["kind"];
/** Every response kind. */
export type ResponseKind = Response["kind"];
/** The request of a given kind. */
export type RequestOf<K extends RequestKind> = Extract<Request, { kind: K }>;
/** The response of a given kind. */
export type ResponseOf<K extends ResponseKind> = Extract<Response, { kind: K }>;

/** One decoded frame. */
export type Frame =
  & { version: number; requestId: number }
  & (
    | { type: "request"; request: Request }
    | { type: "response"; response: Response }
    | { type: "push"; push: Push }
  );
