/**
 * Delivery Service and channels: DM and group channels with server-enforced membership,
 * per-recipient queues of opaque ciphertext, push to connected clients, and the ordering
 * of MLS commits per group epoch (the first commit for an epoch wins; later ones get
 * `epoch_conflict` and re-sync).
 *
 * ```
 * enqueue ─► member? ─► store (COMMIT, idempotent on sender+messageId) ─► notify ─► push
 *            (application, proposal, rejoin: a member whose group state broke sends a
 *            fresh KeyPackage and asks the others to re-add it; DMs and groups alike)
 * commit  ─► member? ─► header: a commit of this group and epoch? ─► adds are new users
 *            (or re-adds: also removed) ─► Welcome only for added users
 *            ─► epoch == channel epoch? ─► roster change + fan-out in one COMMIT
 * subscribe ─► push everything after afterSeq, then on every notify, in order, no repeats
 *             (one subscription per connection: a new one replaces the old; one page in
 *             flight at a time, so a slow reader pauses its own pushes)
 * fetch/ack ─► page through the own queue; ack deletes up to a sequence number
 * ephemeral enqueue ─► member? size? rate? ─► push to the recipients' live subscriptions
 *             (seq 0: not in any queue, never acked), store nothing
 * ```
 *
 * @module
 */
import type {
  ChannelInfo as StoreChannel,
  MemberChannel,
  QueuedMessage,
  ServerStore,
} from "../store/server/mod.ts";
import type { ChannelInfo, DeliveredMessage } from "../wire/mod.ts";
import { looksLikePrivateMessage, readPrivateMessageHeader } from "../mls/mod.ts";
import { AuthError, TransportError, UsageError, ValidationError } from "../errors.ts";
import { constantTimeEqual as bytesEqual, fromHex, utf8 } from "../bytes.ts";
import {
  CHANNEL_ENVELOPE_BYTES,
  EPHEMERAL_WINDOW_MS,
  MAX_CHANNEL_PAGE,
  MAX_CHANNEL_PAGE_BYTES,
  MAX_EPHEMERAL_BYTES,
  MAX_EPHEMERAL_PER_WINDOW,
  MAX_FETCH_PAGE,
  MAX_FETCH_PAGE_BYTES,
  MEMBER_ENTRY_BYTES,
  MESSAGE_ENVELOPE_BYTES,
} from "../limits.ts";
import type { ConnectionState, HandlerTable, ServerContext } from "./context.ts";
import { requireUser } from "./accounts.ts";
import {
  channelIdToStore,
  channelIdToWire,
  checkGroupNameSyntax,
  checkUsernameSyntax,
  messageIdToStore,
} from "./_names.ts";
import { decodeRecord, type DeliveryRecord, encodeRecord } from "./_delivery_record.ts";
import { announcedPage } from "./_push_page.ts";

/**
 * Records decoded once per stored payload: the pushes of one message to many recipients
 * share the payload the store was given, so a fan-out decodes it once.
 */
const DECODED = new WeakMap<Uint8Array, DeliveryRecord>();

function record(payload: Uint8Array): DeliveryRecord {
  let r = DECODED.get(payload);
  if (r === undefined) {
    r = decodeRecord(payload);
    DECODED.set(payload, r);
  }
  return r;
}

/**
 * A page of queued messages as the recipient gets them. A Welcome also names its channel
 * (name and kind): a member added and removed again before reading its queue can no longer
 * look the channel up, yet must still read what was sent while it was in.
 */
async function toDelivered(
  store: ServerStore,
  recipient: string,
  page: QueuedMessage[],
): Promise<DeliveredMessage[]> {
  const channels = new Map<string, StoreChannel | undefined>();
  const out: DeliveredMessage[] = [];
  for (const m of page) {
    const r = record(m.payload);
    const welcome = r.welcomeFor.includes(recipient);
    const d: DeliveredMessage = {
      seq: m.seq,
      channelId: m.channelId === null ? new Uint8Array(0) : channelIdToWire(m.channelId),
      sender: m.sender,
      messageId: fromHex(m.messageId),
      payload: welcome ? r.welcome : r.payload,
      messageKind: welcome ? "welcome" : r.kind,
      epoch: r.epoch,
      sentAtMs: m.receivedAt,
      ...(r.notice ? { serverNotice: r.notice } : {}),
    };
    if (welcome && m.channelId !== null) {
      if (!channels.has(m.channelId)) {
        channels.set(m.channelId, await store.getChannel(m.channelId));
      }
      const c = channels.get(m.channelId);
      if (c) {
        d.channelName = c.name ?? "";
        d.channelKind = c.kind;
      }
    }
    out.push(d);
  }
  return out;
}

async function channelInfo(store: ServerStore, c: StoreChannel): Promise<ChannelInfo> {
  return {
    channelId: channelIdToWire(c.id),
    channelKind: c.kind,
    name: c.name ?? "",
    members: await store.listMembers(c.id),
    epoch: c.epoch,
  };
}

/** Bytes a channel takes in a page, counted as {@link MAX_CHANNEL_PAGE_BYTES} counts them. */
function channelBytes(c: ChannelInfo): number {
  let n = CHANNEL_ENVELOPE_BYTES + c.channelId.length + utf8(c.name).length;
  for (const m of c.members) n += MEMBER_ENTRY_BYTES + utf8(m).length;
  return n;
}

/**
 * One page of a user's channels (or held invitations) after `after`: at most
 * {@link MAX_CHANNEL_PAGE} of them within {@link MAX_CHANNEL_PAGE_BYTES} (at least one), so
 * the answer always fits in a frame, however many groups others added the user to.
 */
async function channelPage(
  store: ServerStore,
  user: string,
  after: Uint8Array,
  held: boolean,
): Promise<{ channels: ChannelInfo[]; more: boolean }> {
  const rows = await store.listChannels(user, {
    ...(after.length > 0 ? { after: channelIdToStore(after) } : {}),
    limit: MAX_CHANNEL_PAGE + 1,
    held,
  });
  const channels: ChannelInfo[] = [];
  let bytes = 0;
  for (const row of rows) {
    if (channels.length >= MAX_CHANNEL_PAGE) return { channels, more: true };
    const info = await channelInfo(store, row);
    bytes += channelBytes(info);
    if (bytes > MAX_CHANNEL_PAGE_BYTES && channels.length > 0) return { channels, more: true };
    channels.push(info);
  }
  return { channels, more: false };
}

/** The channel and its roster, in one read, when `user` is a member of it. */
async function memberChannel(
  store: ServerStore,
  id: Uint8Array,
  user: string,
): Promise<MemberChannel> {
  const mc = await store.channelOfMember(channelIdToStore(id), user);
  // Unknown and not-a-member look the same: no probing of channel ids.
  if (mc === undefined) {
    throw new AuthError("Not a member of this conversation", { code: "forbidden" });
  }
  return mc;
}

/**
 * The channel of `user`'s request and its members, or, when `user` is not a member (any
 * more), how many deliveries the stored request this one resends made: a message stored
 * before its sender left, or a commit accepted before its sender was off the roster (the
 * last member's leave takes its sender off itself; a later commit may remove them), whose
 * answer was lost. It is answered as the duplicate it is; refused, its sender would undo
 * what the channel already has (sim seed 5).
 */
async function memberOrResend(
  store: ServerStore,
  req: { channelId: Uint8Array; messageId: Uint8Array },
  user: string,
): Promise<MemberChannel | { resent: number }> {
  try {
    return await memberChannel(store, req.channelId, user);
  } catch (e) {
    const dup = await store.findDuplicate(user, messageIdToStore(req.messageId));
    if (dup === undefined) throw e;
    return { resent: dup.deliveries.length };
  }
}

/**
 * An application message leaves only in the channel's current epoch: one encrypted in an
 * epoch the channel has left may reach a member who holds no key of it (one added since:
 * "MLS message epoch is too old"), so it is refused with `epoch_conflict`; its sender
 * catches up and encrypts it again (the client sends without syncing first and learns here
 * that it is behind). The epoch is read from the ciphertext's cleartext header (what the
 * members will read), not from the request's informational field; a payload that is not an
 * MLS PrivateMessage is passed on as before. A resend of a message already stored (its
 * answer was lost) is still answered as the duplicate it is.
 */
async function checkCurrentEpoch(
  store: ServerStore,
  me: string,
  req: { payload: Uint8Array; messageId: Uint8Array },
  channelEpoch: number,
): Promise<void> {
  if (!looksLikePrivateMessage(req.payload)) return;
  let epoch: bigint;
  try {
    epoch = readPrivateMessageHeader(req.payload).epoch;
  } catch {
    return;
  }
  if (epoch >= BigInt(channelEpoch)) return;
  if (await store.findDuplicate(me, messageIdToStore(req.messageId)) !== undefined) return;
  throw new UsageError(
    `Message refused: the conversation is at epoch ${channelEpoch}, not ${epoch}: catch up first`,
    { code: "epoch_conflict" },
  );
}

/** Handlers of the Delivery Service and channels. */
export function deliveryHandlers(ctx: ServerContext, store: ServerStore): HandlerTable {
  const maxBytes = ctx.config.maxMessageBytes;
  const checkSize = (n: number) => {
    if (n > maxBytes) {
      throw new ValidationError(`Message exceeds the server limit of ${maxBytes} bytes`, {
        code: "too_large",
      });
    }
  };

  return {
    async createDm(req, conn) {
      const me = requireUser(conn);
      const peer = checkUsernameSyntax(req.username);
      if (peer === me) throw new UsageError("A DM needs another user (notes to self stay local)");
      if (!(await store.getUser(peer))) {
        throw new UsageError(`Unknown user ${peer}`, { code: "not_found" });
      }
      const { channel } = await store.getOrCreateDm(me, peer);
      return { kind: "channel", ...(await channelInfo(store, channel)) };
    },

    async createGroup(req, conn) {
      const me = requireUser(conn);
      const name = checkGroupNameSyntax(req.name);
      const channel = await store.createGroupChannel({ name, creator: me });
      return { kind: "channel", ...(await channelInfo(store, channel)) };
    },

    async listChannels(_req, conn) {
      // the v1.0 form: the first page (a reader of it does not know `more`)
      const me = requireUser(conn);
      return { kind: "channels", ...(await channelPage(store, me, new Uint8Array(0), false)) };
    },

    async listChannelsPage(req, conn) {
      const me = requireUser(conn);
      return { kind: "channels", ...(await channelPage(store, me, req.after, req.held)) };
    },

    async answerInvitation(req, conn) {
      const me = requireUser(conn);
      await store.answerInvitation(channelIdToStore(req.channelId), me, req.accept);
      return { kind: "ok" };
    },

    async members(req, conn) {
      const me = requireUser(conn);
      const { members } = await memberChannel(store, req.channelId, me);
      return { kind: "memberList", members };
    },

    async enqueue(req, conn) {
      const me = requireUser(conn);
      if (req.messageKind === "commit" || req.messageKind === "welcome") {
        throw new UsageError("Commits and Welcomes go through the commit request");
      }
      if (req.ephemeral) return await ephemeral(store, me, req, conn);
      checkSize(req.payload.length);
      const mc = await memberOrResend(store, req, me);
      if ("resent" in mc) return { kind: "enqueued", duplicate: true, recipients: mc.resent };
      const { channel: c, members } = mc;
      if (req.messageKind === "application") await checkCurrentEpoch(store, me, req, c.epoch);
      let recipients = members.filter((m) => m !== me);
      if (req.recipients.length > 0) {
        const wanted = req.recipients.map(checkUsernameSyntax);
        for (const r of wanted) {
          if (!members.includes(r)) {
            throw new UsageError(`${r} is not a member of this conversation`);
          }
        }
        recipients = [...new Set(wanted)].filter((m) => m !== me);
      }
      // Consent (issue 10): an application message never reaches the queue of a member who
      // blocked its sender. The answer counts it as delivered: the sender cannot tell. The
      // block counts it, so that unblocking tells the blocker how many were dropped.
      const blockers = req.messageKind === "application"
        ? await store.dropForBlockers(me, recipients)
        : [];
      if (blockers.length > 0) {
        recipients = recipients.filter((r) => !blockers.includes(r));
        if (recipients.length === 0) {
          return { kind: "enqueued", duplicate: false, recipients: blockers.length };
        }
      }
      const result = await store.enqueue({
        sender: me,
        messageId: messageIdToStore(req.messageId),
        channelId: c.id,
        payload: encodeRecord({
          kind: req.messageKind,
          epoch: req.epoch,
          payload: req.payload,
          welcomeFor: [],
          welcome: new Uint8Array(0),
        }),
        recipients,
      });
      return {
        kind: "enqueued",
        duplicate: result.duplicate,
        recipients: result.deliveries.length + blockers.length,
      };
    },

    async commit(req, conn) {
      const me = requireUser(conn);
      checkSize(
        req.payload.length + (req.welcome?.length ?? 0) + (req.welcomes[0]?.payload.length ?? 0),
      );
      const mc = await memberOrResend(store, req, me);
      if ("resent" in mc) return { kind: "committed", duplicate: true, recipients: mc.resent };
      const { channel: c, members } = mc;
      // The cleartext MLS header must say: a commit, of this group, in the claimed epoch.
      const header = readPrivateMessageHeader(req.payload);
      if (
        header.contentType !== "commit" || !bytesEqual(header.groupId, req.channelId) ||
        header.epoch !== BigInt(req.epoch)
      ) {
        throw new ValidationError("Commit payload is not an MLS commit of this group and epoch");
      }
      const add = [...new Set(req.add.map(checkUsernameSyntax))];
      const remove = [...new Set(req.remove.map(checkUsernameSyntax))];
      // The roster rules hold for a commit of the channel's current epoch. Any other
      // commit is either a resend of one already accepted (its answer was lost: the store
      // answers it as a duplicate) or one that lost the race (the store refuses it with
      // epoch_conflict, so its sender re-syncs and retries): the store decides, atomically.
      // A commit past the channel's epoch: a heal if a restore put the channel back as it
      // was in the backup (the store decides): the member's MLS group moved on since, and
      // its roster (add, remove) is taken as the group's. Its Welcome rules are any commit's.
      const heal = req.epoch > c.epoch;
      if (req.epoch === c.epoch) {
        for (const u of add) {
          if (!(await store.getUser(u))) {
            throw new UsageError(`Unknown user ${u}`, { code: "not_found" });
          }
          // Re-adding a member (who asked to rejoin) removes the stale leaf in the same
          // commit. A DM's roster holds both users from the start: its first commit adds
          // the peer.
          const firstDmCommit = c.kind === "dm" && req.epoch === 0 && u !== me;
          if (members.includes(u) && !remove.includes(u) && !firstDmCommit) {
            throw new UsageError(
              `Cannot add ${u}: already a member (a re-add must also remove them)`,
              { code: "conflict" },
            );
          }
        }
        for (const u of remove) {
          if (!members.includes(u)) {
            throw new UsageError(`${u} is not a member of this conversation`);
          }
        }
      }
      // One Welcome for every new member (welcome + welcomeFor); the older per-user list
      // is still accepted when every entry carries the same Welcome.
      let welcome: Uint8Array | undefined = (req.welcomeFor?.length ?? 0) > 0
        ? req.welcome
        : undefined;
      const welcomeFor = (req.welcomeFor?.length ?? 0) > 0
        ? [...new Set(req.welcomeFor!.map(checkUsernameSyntax))]
        : [...new Set(req.welcomes.map((w) => checkUsernameSyntax(w.username)))];
      if (welcome === undefined && req.welcomes.length > 0) {
        welcome = req.welcomes[0]!.payload;
        if (req.welcomes.some((w) => !bytesEqual(w.payload, welcome!))) {
          throw new ValidationError("All Welcomes of one commit must be the same MLS Welcome");
        }
      }
      // A Welcome to anyone else (an existing member) would fork them into a look-alike group.
      for (const u of welcomeFor) {
        if (!add.includes(u)) {
          throw new ValidationError("A Welcome may only be for a user the commit adds");
        }
      }
      // a heal's users the restore lost (registered after the backup) stay off the roster
      if (heal) {
        const known = await Promise.all(add.map((u) => store.getUser(u)));
        add.splice(0, add.length, ...add.filter((_, i) => known[i] !== undefined));
      }
      const after = new Set([...members.filter((m) => !remove.includes(m)), ...add]);
      // Consent (issue 10): a user who blocked the committer gets neither the Welcome nor
      // the commit that adds them. They stay on the roster (the MLS group has them; the
      // roster must match it), as a member who never joins; the answer counts them.
      const blockers = await store.blockersOf(me, welcomeFor);
      // the removed members receive the commit too, so they learn they are out
      const recipients = [...new Set([...members, ...add])].filter((m) =>
        m !== me && !blockers.includes(m)
      );
      const result = await store.commitAndFanOut({
        sender: me,
        messageId: messageIdToStore(req.messageId),
        channelId: c.id,
        epoch: req.epoch,
        payload: encodeRecord({
          kind: "commit",
          epoch: req.epoch,
          payload: req.payload,
          welcomeFor: welcomeFor.filter((u) => !blockers.includes(u)),
          welcome: welcome ?? new Uint8Array(0),
        }),
        recipients,
        // a re-added member stays on the roster: neither added nor removed there
        rosterAdd: add.filter((u) => !members.includes(u)),
        rosterRemove: remove.filter((u) => !add.includes(u) && members.includes(u)),
        ...(heal ? { heal } : {}),
      });
      ctx.log.debug("commit accepted", { channel: c.id, epoch: req.epoch, members: after.size });
      return {
        kind: "committed",
        duplicate: result.duplicate,
        recipients: result.deliveries.length + blockers.length,
      };
    },

    async fetch(req, conn) {
      const me = requireUser(conn);
      const limit = Math.max(1, Math.min(req.limit || MAX_FETCH_PAGE, MAX_FETCH_PAGE));
      const page = await fetchPage(store, me, req.afterSeq, limit);
      return {
        kind: "messages",
        messages: await toDelivered(store, me, page.messages),
        more: page.more,
      };
    },

    async ack(req, conn) {
      const me = requireUser(conn);
      await store.ack(me, req.uptoSeq);
      return { kind: "ok" };
    },

    subscribe(req, conn, stream) {
      const me = requireUser(conn);
      // one subscription per connection: a new one replaces the old (its loop stops)
      SUBSCRIPTIONS.get(conn)?.();
      startPush(
        store,
        conn,
        me,
        req.afterSeq,
        (messages) => stream.push({ messages }),
        stream.signal,
        ctx,
      );
      return Promise.resolve({ kind: "ok" });
    },
  };
}

/** Ephemeral enqueues of each connection in the current window: the rate limit. */
const EPHEMERAL_RATE = new WeakMap<ConnectionState, { since: number; count: number }>();

/**
 * Live push targets of each user: one function per subscribed connection that pushes one
 * ephemeral message unless a page is in flight (then it is dropped: ephemeral is best
 * effort, and a slow reader must not queue them up).
 */
const LIVE = new WeakMap<ServerStore, Map<string, Set<(m: DeliveredMessage) => void>>>();

/** The live push targets of one server (its store): servers in one process stay apart. */
function liveOf(store: ServerStore): Map<string, Set<(m: DeliveredMessage) => void>> {
  let m = LIVE.get(store);
  if (m === undefined) LIVE.set(store, m = new Map());
  return m;
}

/**
 * An ephemeral message (a typing indicator): application only, from a member, within
 * {@link MAX_EPHEMERAL_BYTES} and {@link MAX_EPHEMERAL_PER_WINDOW} per connection, pushed
 * with seq 0 to the connections of the recipients subscribed right now, and stored
 * nowhere (no queue, no duplicate record, no block count: a blocker gets none). The
 * answer says how many connections it reached.
 */
async function ephemeral(
  store: ServerStore,
  me: string,
  req: {
    channelId: Uint8Array;
    messageId: Uint8Array;
    payload: Uint8Array;
    messageKind: string;
    epoch: number;
    recipients: string[];
  },
  conn: ConnectionState,
): Promise<{ kind: "enqueued"; duplicate: boolean; recipients: number }> {
  if (req.messageKind !== "application") {
    throw new UsageError("Only application messages can be ephemeral");
  }
  if (req.payload.length > MAX_EPHEMERAL_BYTES) {
    throw new ValidationError(
      `Ephemeral message exceeds the limit of ${MAX_EPHEMERAL_BYTES} bytes`,
      { code: "too_large" },
    );
  }
  const now = Date.now();
  const rate = EPHEMERAL_RATE.get(conn);
  if (rate === undefined || now - rate.since >= EPHEMERAL_WINDOW_MS) {
    EPHEMERAL_RATE.set(conn, { since: now, count: 1 });
  } else if (++rate.count > MAX_EPHEMERAL_PER_WINDOW) {
    throw new AuthError("Too many ephemeral messages: slow down", { code: "rate_limited" });
  }
  const { channel: c, members } = await memberChannel(store, req.channelId, me);
  const wanted = req.recipients.length > 0 ? req.recipients.map(checkUsernameSyntax) : members;
  let recipients = [...new Set(wanted)].filter((m) => m !== me && members.includes(m));
  const blockers = await store.blockersOf(me, recipients);
  recipients = recipients.filter((r) => !blockers.includes(r));
  const m: DeliveredMessage = {
    seq: 0,
    channelId: channelIdToWire(c.id),
    sender: me,
    messageId: req.messageId,
    payload: req.payload,
    messageKind: "application",
    epoch: req.epoch,
    sentAtMs: now,
  };
  let reached = 0;
  for (const r of recipients) {
    for (const push of liveOf(store).get(r) ?? []) {
      push(m);
      reached++;
    }
  }
  return { kind: "enqueued", duplicate: false, recipients: reached };
}

/** The one push subscription of each connection: its stop function. */
const SUBSCRIPTIONS = new WeakMap<ConnectionState, () => void>();

/**
 * One page of a queue that fits in a frame: bounded by count and by bytes (one maximal
 * message always fits), with `more` when the queue holds more.
 */
function fetchPage(store: ServerStore, user: string, afterSeq: number, limit: number) {
  return store.fetchPage(user, afterSeq, {
    limit,
    maxBytes: MAX_FETCH_PAGE_BYTES,
    rowOverheadBytes: MESSAGE_ENVELOPE_BYTES,
  });
}

/**
 * Push loop of one subscription: one page at a time, in sequence order, each message
 * once; a notify that arrives during a page triggers one more round. A page is what the
 * store announced with its notify when that continues the queue (no read: a fan-out to N
 * recipients reads nothing back), else a fetch of the queue. At most
 * {@link MAX_FETCH_PAGE} announced messages wait (a slow reader pauses its own pushes):
 * past that they are dropped and the queue, which holds them, is read instead.
 */
function startPush(
  store: ServerStore,
  conn: ConnectionState,
  user: string,
  afterSeq: number,
  send: (m: DeliveredMessage[]) => Promise<void>,
  signal: AbortSignal,
  ctx: ServerContext,
): void {
  let cursor = afterSeq;
  const announced: QueuedMessage[] = [];
  let running = false;
  let again = false;
  let stopped = false;
  const pump = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        while (!stopped) {
          const page = announcedPage(announced, cursor) ??
            await fetchPage(store, user, cursor, MAX_FETCH_PAGE);
          const batch = page.messages;
          if (batch.length === 0 || stopped) break; // replaced while fetching: no work
          const delivered = await toDelivered(store, user, batch);
          if (stopped) break;
          await send(delivered);
          cursor = batch[batch.length - 1]!.seq;
          if (!page.more) break;
        }
      } while (again && !stopped);
    } catch (e) {
      // the connection went (or was cut off): expected; anything else is a bug to see
      if (e instanceof TransportError) {
        ctx.log.debug("push stopped", { conn: conn.id, error: String(e) });
      } else ctx.log.error("push failed", { conn: conn.id, error: String(e) });
      stop();
    } finally {
      running = false;
    }
  };
  const live = (m: DeliveredMessage) => {
    if (running || stopped) return;
    running = true;
    send([m]).catch(() => {}).finally(() => {
      running = false;
      if (again) void pump();
    });
  };
  const liveUsers = liveOf(store);
  let lives = liveUsers.get(user);
  if (lives === undefined) liveUsers.set(user, lives = new Set());
  lives.add(live);
  const unsubscribe = store.notifier.subscribe(user, (message) => {
    if (message !== undefined) {
      if (announced.length < MAX_FETCH_PAGE) announced.push(message);
      else announced.length = 0; // a slow reader: the queue holds them all, read it then
    }
    void pump();
  });
  const stop = () => {
    stopped = true;
    unsubscribe();
    const set = liveUsers.get(user);
    set?.delete(live);
    if (set?.size === 0) liveUsers.delete(user);
    conn.cleanups.delete(stop);
    if (SUBSCRIPTIONS.get(conn) === stop) SUBSCRIPTIONS.delete(conn);
  };
  conn.cleanups.add(stop);
  SUBSCRIPTIONS.set(conn, stop);
  signal.addEventListener("abort", stop, { once: true });
  // First pump after the current burst of requests: a subscribe replaced right away
  // (several on one stream) does no work at all.
  (ctx.defer ?? setTimeout)(() => void pump(), 0);
}
