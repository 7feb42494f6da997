/**
 * Every size, count and time limit in qpq lives here, so that a reviewer can read them in
 * one place and a decoder never invents its own.
 *
 * @module
 */

/** Largest Cap'n Proto frame accepted on any stream (bytes, excluding the 4-byte prefix). */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Cap'n Proto traversal limit in 8-byte words for decoding one frame. */
export const MAX_TRAVERSAL_WORDS = MAX_FRAME_BYTES / 8 * 2;
/** Cap'n Proto nesting depth limit for decoding one frame. */
export const MAX_NESTING_DEPTH = 32;
/** Wire protocol version spoken by this build. */
export const WIRE_VERSION = 1;
/** ALPN protocol identifier for qpq over QUIC. */
export const ALPN = "qpq/1";
/** Default time a client waits for a response before giving up (ms). */
export const REQUEST_TIMEOUT_MS = 15_000;
/** Time a connection may take to send a complete frame once it started one (ms). */
export const FRAME_READ_TIMEOUT_MS = 10_000;
/** Concurrent bidirectional streams a client may keep open per connection. */
export const MAX_STREAMS_PER_CONNECTION = 256;
/** Requests being handled at once per connection. */
export const MAX_INFLIGHT_PER_CONNECTION = 64;
/** Most client connections one server serves at once; more are answered `unavailable`. */
export const MAX_CONNECTIONS = 10_000;
/** Most connections logged in as one user at once (devices, CLI runs); more get `quota`. */
export const MAX_CONNECTIONS_PER_USER = 32;
/**
 * Most bytes of answers and pushes a connection may leave unread beyond what QUIC's flow
 * control takes (about 1 MiB per stream); past it the connection is cut off. Pushes wait
 * for each page to be taken, so a slow reader only pauses its own pushes.
 */
export const MAX_UNSENT_BYTES_PER_CONNECTION = 8 * 1024 * 1024;
/** How long a connection over {@link MAX_CONNECTIONS} is kept to answer `unavailable` (ms). */
export const REFUSED_CONNECTION_MS = 2_000;
/** QUIC handshake / idle timeout (ms). */
export const QUIC_IDLE_TIMEOUT_MS = 10_000;
/** How long a client waits for the QUIC handshake by default (ms). */
export const CONNECT_TIMEOUT_MS = 10_000;
/**
 * How long what works offline (`send`, `list`, `members`, the REPL and `chat` at start, a
 * line typed in them while offline) waits for the server's QUIC handshake before it goes
 * on from the local state (ms). A UDP server that is not there never answers (no
 * "connection refused" reaches a QUIC client): this deadline is the offline test. A fresh
 * process's first handshake on a loaded loopback takes 50-250 ms; reconnecting in the
 * background waits longer each time, up to {@link CONNECT_TIMEOUT_MS}.
 */
export const QUICK_CONNECT_MS = 750;
/** QUIC keep-alive interval (ms). */
export const QUIC_KEEPALIVE_MS = 2_500;
/** Time graceful shutdown waits for in-flight requests (ms). */
export const SHUTDOWN_GRACE_MS = 5_000;
/** Pause between the last response and closing connections at shutdown (ms). */
export const SHUTDOWN_DRAIN_MS = 150;
/** Longest a closing client waits for the server to end the stream too (ms). */
export const CLOSE_WAIT_MS = 1_000;
/**
 * While the server store cannot write, a health request tries one tiny write at most this
 * often (ms), so health turns `ok` again once space is back even without traffic.
 */
export const STORAGE_PROBE_INTERVAL_MS = 3_000;
/**
 * The server store checkpoints its WAL (off the event loop, `_checkpointer.ts`) after this
 * many committed batches: a delivery's two commits write 10-20 pages, so about SQLite's own
 * 1,000-page interval.
 */
export const CHECKPOINT_EVERY_COMMITS = 128;
/**
 * SQLite's automatic checkpoint (on the event loop) only past this many WAL pages (64 MiB
 * of 4 KiB pages): a backstop that keeps the WAL bounded should the checkpoint worker lag.
 */
export const WAL_BACKSTOP_PAGES = 16_384;
/** How long the checkpoint worker's TRUNCATE step waits for other readers of the file (ms). */
export const CHECKPOINT_BUSY_TIMEOUT_MS = 100;
/**
 * How much that probe writes (and removes at once): the store counts as writable again
 * only when this much fits, so a nearly full disk stays `degraded` instead of flapping.
 */
export const STORAGE_PROBE_BYTES = 1024 * 1024;

/** Longest username in characters (ASCII; the rule is in src/names.ts). */
export const MAX_USERNAME_CHARS = 32;
/** Longest username in bytes (UTF-8). */
export const MAX_USERNAME_BYTES = 64;
/** Longest group/channel name in bytes. */
export const MAX_GROUP_NAME_BYTES = 64;
/** Largest opaque ciphertext payload in one delivery message (bytes). */
export const MAX_MESSAGE_BYTES = 512 * 1024;
/** Most undelivered messages in one recipient queue. */
export const MAX_QUEUE_MESSAGES = 10_000;
/**
 * Most undelivered messages one sender may hold in another user's queue (a fifth of
 * {@link MAX_QUEUE_MESSAGES}, so no single sender fills a queue). A commit may go up to
 * twice this, so a sender at the cap can still change the group.
 */
export const MAX_SENDER_QUEUE_MESSAGES = MAX_QUEUE_MESSAGES / 5;
/** Most undelivered payload bytes one sender may hold in another user's queue (commits: twice). */
export const MAX_SENDER_QUEUE_BYTES = 64 * 1024 * 1024;
/** How long undelivered messages are kept (seconds). */
export const MESSAGE_RETENTION_SECONDS = 30 * 24 * 3600;
/**
 * How far `qpq server restore` moves every queue's sequence numbers past the highest one
 * in the backup (at least; also past the restore time in microseconds): more than any
 * queue receives between a backup and its restore, so a number a client saw from the lost
 * history is never handed out again.
 */
export const RESTORE_SEQ_GAP = 1_000_000_000;
/**
 * How far one heal (a member's commit rebuilding a group a restore put back) may move a
 * channel's epoch: the server cannot check the MLS state, so the jump is bounded (a group
 * rarely takes a thousand commits between a backup and its restore; a jump to near the
 * largest epoch would wedge the channel).
 */
export const MAX_HEAL_EPOCH_JUMP = 100_000;
/**
 * What a client keeps of the messages the server acknowledged, to send them again if the
 * server is restored from a backup taken before them: the newest this many, of at most
 * {@link SENT_KEEP_BYTES} in all, acknowledged within {@link SENT_KEEP_MS}.
 */
export const SENT_KEEP_MESSAGES = 500;
/** Most bytes of acknowledged messages a client keeps (see {@link SENT_KEEP_MESSAGES}). */
export const SENT_KEEP_BYTES = 16 * 1024 * 1024;
/** How long a client keeps an acknowledged message (ms; see {@link SENT_KEEP_MESSAGES}). */
export const SENT_KEEP_MS = 7 * 24 * 3600 * 1000;
/** Most messages returned by one fetch. */
export const MAX_FETCH_PAGE = 500;
/**
 * Most a delivered message adds on the wire to its stored size (sender, message id and
 * payload are stored; channel id and name, the Cap'n Proto struct, list tag and far
 * pointers are not): about 300 bytes, counted as 512.
 */
export const MESSAGE_ENVELOPE_BYTES = 512;
/**
 * Most bytes in one fetch page or push: stored sizes plus {@link MESSAGE_ENVELOPE_BYTES}
 * each. The rest of the frame (16 KiB) is room for the frame header and segment table, so
 * a page always fits in {@link MAX_FRAME_BYTES}; a page holds at least one message, and
 * one maximal message ({@link MAX_MESSAGE_BYTES} plus its record) is well under this.
 */
export const MAX_FETCH_PAGE_BYTES = MAX_FRAME_BYTES - 16 * 1024;
/** Most KeyPackages in one upload. */
export const MAX_KEY_PACKAGE_BATCH = 100;
/** Largest single KeyPackage (bytes); X-Wing keys make them about 1.3 KiB. */
export const MAX_KEY_PACKAGE_BYTES = 16 * 1024;
/** Most KeyPackages stored for one user. */
export const MAX_KEY_PACKAGES_PER_USER = 500;
/**
 * KeyPackage fetches one user may make at once (adding that many people), refilled over
 * {@link KEY_PACKAGE_FETCH_REFILL_MS}; past it fetchKeyPackage is `rate_limited`.
 */
export const KEY_PACKAGE_FETCHES_PER_REQUESTER = 1000;
/**
 * KeyPackage fetches of one user's packages, by anyone, at once, refilled over
 * {@link KEY_PACKAGE_FETCH_REFILL_MS}: nobody drains a user's stock faster than this. It
 * equals the batch a client keeps (20), which an online client tops up every 10 minutes.
 */
export const KEY_PACKAGE_FETCHES_PER_TARGET = 20;
/** Time in which the KeyPackage fetch allowances refill completely (ms). */
export const KEY_PACKAGE_FETCH_REFILL_MS = 10 * 60_000;
/**
 * Below this many KeyPackages of a suite left after a fetch (or when a last resort is
 * handed out), the server tells the owner (a `serverNotice` in its own queue).
 */
export const KEY_PACKAGE_LOW_WATER = 5;
/** At most one KeyPackage notice per user in this interval (ms). */
export const KEY_PACKAGE_NOTICE_INTERVAL_MS = 60 * 60_000;
/** Most members of one channel. */
export const MAX_CHANNEL_MEMBERS = 10_000;
/** Session token lifetime (seconds). */
export const SESSION_TTL_SECONDS = 7 * 24 * 3600;
/** Session token length in bytes (256 bits). */
export const SESSION_TOKEN_BYTES = 32;
/**
 * Login attempts allowed per user from one source address (IPv4 address, IPv6 /64) per
 * window: failures from one source never use up the user's attempts from another.
 */
export const LOGIN_ATTEMPTS_PER_USER = 10;
/**
 * Login attempts one source address (IPv4 address, IPv6 /64) may start at once, whatever
 * the names, refilled over {@link LOGIN_WINDOW_MS}; a login that succeeds gives its attempt
 * back, so only failed or abandoned ones count (an office behind one NAT logs in freely).
 * Config `login_attempts_per_source`. It replaces the per-connection allowance, which a
 * new connection reset.
 */
export const LOGIN_ATTEMPTS_PER_SOURCE = 30;
/** Login rate-limit window (ms). */
export const LOGIN_WINDOW_MS = 60_000;
/** Shortest auth_token accepted in production mode. */
export const MIN_PRODUCTION_TOKEN_LENGTH = 16;
/** Shortest db_key accepted in production mode (it is used as a key, not stretched). */
export const MIN_PRODUCTION_DB_KEY_LENGTH = 32;

// ---- server store and auth (owned by src/store + src/auth) ----
/** Longest client-chosen message id (idempotency key) in bytes. */
export const MAX_MESSAGE_ID_BYTES = 64;
/** Longest channel id in bytes. */
export const MAX_CHANNEL_ID_BYTES = 64;
/** Identity public key length (Ed25519, bytes). */
export const IDENTITY_KEY_BYTES = 32;
/** How long a started OPAQUE login may wait for its finish message (ms). */
export const PENDING_LOGIN_TTL_MS = 60_000;
/** Most distinct keys one in-memory rate limiter tracks before evicting the oldest. */
export const MAX_RATE_LIMIT_KEYS = 100_000;

// --- MLS group layer (src/mls/, owned by the MLS helper) ---------------------------------
/** Longest lifetime a KeyPackage may declare, notAfter - notBefore (seconds). */
export const MAX_KEY_PACKAGE_LIFETIME_SECONDS = 90 * 24 * 3600;
/** Clock skew tolerated when checking a KeyPackage's notBefore (seconds). */
export const KEY_PACKAGE_CLOCK_SKEW_SECONDS = 300;
/** Largest serialized MLS group state accepted by the state decoder (bytes). */
export const MAX_MLS_STATE_BYTES = 256 * 1024 * 1024;
/** Most nodes in one MLS ratchet tree (2^16 - 1 nodes, i.e. 32,768 leaves). */
export const MAX_MLS_TREE_NODES = 65_535;
/** Largest MLS handshake or application message accepted by processMessage (bytes). */
export const MAX_MLS_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Largest Welcome or out-of-band ratchet tree accepted by joinFromWelcome (bytes). */
export const MAX_MLS_WELCOME_BYTES = 64 * 1024 * 1024;
/** Past epochs whose receive keys are kept for late application messages. */
export const MLS_RETAINED_EPOCHS = 3;
/** Largest secret exportSecret will derive (bytes). */
export const MAX_MLS_EXPORT_BYTES = 1024;
/**
 * Most KeyPackages added by one commit: ts-mls encodes vectors recursively and overflows
 * the stack near 10,000 elements. A commit adding n X-Wing members is about 1.4 KiB * n,
 * so adds that must fit MAX_MESSAGE_BYTES go in batches of about 300.
 */
export const MAX_MLS_ADDS_PER_COMMIT = 2000;

// ---- crypto (owned by src/crypto) ----
/** Largest plaintext one sealed envelope may carry (bytes). */
export const MAX_ENVELOPE_PLAINTEXT_BYTES = 16 * 1024 * 1024;
/** Largest Argon2id memory cost accepted from a parameters record (KiB; 2 GiB). */
export const MAX_ARGON2_MEMORY_KIB = 2 * 1024 * 1024;
/** Largest Argon2id pass count accepted from a parameters record. */
export const MAX_ARGON2_ITERATIONS = 64;
/** Largest Argon2id lane count accepted from a parameters record. */
export const MAX_ARGON2_PARALLELISM = 16;
/** Shortest salt accepted for password key derivation (bytes). */
export const MIN_PASSWORD_SALT_BYTES = 16;
/** Longest MLS group id (bytes). */
export const MAX_MLS_GROUP_ID_BYTES = 255;

// ---- client local state (src/store/client/, owned by the client-store helper) ----
/** Longest id or name in the client store: conversation, message, user, device (UTF-8 bytes). */
export const MAX_CLIENT_ID_BYTES = 1024;
/** Longest reason recorded for a broken group in the client store (UTF-8 bytes). */
export const MAX_CLIENT_REASON_BYTES = 1024;

// ---- hostile input (tests/fuzz_test.ts, tests/adversarial_test.ts; owned by the fuzz helper) ----
/**
 * OPAQUE registration request length (a ristretto255 blinded element). The OPAQUE library
 * ignores trailing bytes, so the server checks exact lengths at the edge.
 */
export const OPAQUE_REGISTRATION_REQUEST_BYTES = 32;
/** OPAQUE KE1 length: blinded element, client nonce, client key share (32 each). */
export const OPAQUE_KE1_BYTES = 96;
/** OPAQUE KE3 length: the client's key-confirmation MAC. */
export const OPAQUE_KE3_BYTES = 64;

// ---- consent (issue 10: requests and blocks) ----
/**
 * Most users one account may block on the server. Bounds the rows one account can make the
 * server keep; a person blocks a handful, a spam wave a few thousand at most.
 */
export const MAX_BLOCKS_PER_USER = 10_000;
/**
 * Most held messages of one request counted by `qpq requests` and shown when it is
 * accepted (the newest ones; the rest stay in `history`). Bounds the work one stranger's
 * flood costs the reader.
 */
export const MAX_REQUEST_MESSAGES_SHOWN = 1000;

// ---- issue 12, part C: the client never reports success the server refused ----
/**
 * Commits a client remembers per group (hashes of the last ones it applied or made): a
 * commit of a passed epoch that is one of them is a replay, ignored; any other shows that
 * the server's history is not ours (restored from a backup, or lying) and breaks the group.
 */
export const MAX_REMEMBERED_COMMITS = 16;

// ---- issue 18: logout everywhere and password change ----
/**
 * Password changes (`changePasswordStart`, counted whether or not the current password was
 * right) one account may start per {@link PASSWORD_CHANGE_WINDOW_MS}, per server. Each one
 * costs an OPAQUE login check and, when it finishes, a write that ends every session; a
 * person changes a password a few times a year. Guessing the current password this way is
 * bounded by the login limits too (each attempt starts with a `loginStart`).
 */
export const PASSWORD_CHANGES_PER_WINDOW = 5;
/** Window of {@link PASSWORD_CHANGES_PER_WINDOW} (ms): one hour. */
export const PASSWORD_CHANGE_WINDOW_MS = 60 * 60_000;
/** How long a started password change may wait for its finish message (ms). */
export const PENDING_PASSWORD_CHANGE_TTL_MS = 60_000;
// ---- issue 18: strangers cannot lock anyone out (connection admission) ----
/**
 * Time a connection has to log in (login or resume) from when it opens, or from when it
 * logged out (ms); then it is closed. A successful registration starts the time again,
 * so register-then-login gets it twice. Honest clients need well under it: `qpq ping` and
 * `qpq health` are one request, a login costs one Argon2id run (about 0.5–1 s).
 */
export const LOGIN_DEADLINE_MS = 10_000;
/**
 * Connections not logged in at once from one source address (an IPv4 address, an IPv6
 * /64); more are refused. 64 is an office or carrier NAT logging in 30 people a second
 * (each is a stranger for about 2 s), and 64 × 100 KB ≈ 6 MB of server memory.
 */
export const MAX_UNAUTHENTICATED_PER_SOURCE = 64;
/**
 * Part of `max_connections` that connections not logged in may hold (its default is
 * max_connections / this): the rest is kept for logged-in ones. Past the share a new
 * connection displaces the oldest connection not logged in.
 */
export const UNAUTHENTICATED_SHARE_DIVISOR = 4;
/**
 * Buffer of a frame reader's read while no frame is in progress (bytes): an idle QUIC
 * stream's pending read holds it, so it is small (a ping is about 50 bytes; Deno's own
 * default, 64 KiB, was about 40% of an idle connection's memory).
 */
export const FRAME_READ_IDLE_BYTES = 4 * 1024;
/** Largest buffer of one read inside a frame (bytes); a read never asks past the frame. */
export const FRAME_READ_CHUNK_BYTES = 64 * 1024;
/**
 * How long a client call that lost its connection waits for the QUIC close to say why
 * the server closed it ("not logged in within 10 s"), to put that in the error (ms).
 */
export const CLOSE_REASON_WAIT_MS = 200;

// ---- issue 18: logins a stranger cannot lock ----
/**
 * Login attempts all "unknown" sources share per account at once: a source is known for an
 * account once a login from it succeeded (the last {@link LOGIN_KNOWN_SOURCES_PER_USER},
 * for {@link LOGIN_KNOWN_SOURCE_MS}); known sources never spend this allowance.
 */
export const LOGIN_UNKNOWN_SOURCE_BURST = 20;
/**
 * Time in which one attempt from an unknown source comes back to an account's shared
 * allowance (ms): 1 a minute, so online guessing from any number of addresses is bounded
 * at {@link LOGIN_UNKNOWN_SOURCE_BURST} + 1,440 attempts per account per day.
 */
export const LOGIN_UNKNOWN_SOURCE_REFILL_MS = 60_000;
/**
 * Longest a login from an unknown source is held back when the shared allowance is
 * empty, waiting for its next attempt (ms): unknown sources are slowed down first and
 * refused only past this (below the client's request timeout).
 */
export const LOGIN_SLOWDOWN_MAX_MS = 8_000;
/** Sources remembered per account as known (the most recent successful logins). */
export const LOGIN_KNOWN_SOURCES_PER_USER = 8;
/** How long a source stays known for an account after its last successful login (ms). */
export const LOGIN_KNOWN_SOURCE_MS = 30 * 24 * 3600 * 1000;

/**
 * Below this `max_message_bytes` the server warns at start (issue 21: 1,000 broke every
 * DM without a word): measured with the default X-Wing suite, a DM's first message fits
 * in 8 KB but inviting two people into a group of three is over 12 KB, and Welcomes and
 * commits grow by about 2.5 KB per member.
 */
export const MESSAGE_BYTES_WARN_BELOW = 65_536;
// ---- issue 18: lists that grow with other people's actions are paged; groups per user ----
/** Most channels in one `listChannelsPage` answer. */
export const MAX_CHANNEL_PAGE = 500;
/**
 * Most bytes of one channel page, counted as {@link CHANNEL_ENVELOPE_BYTES} per channel plus
 * its id, name and members ({@link MEMBER_ENTRY_BYTES} each beside the name): the rest of
 * the frame (64 KiB) is room for the frame header, so a page always fits in
 * {@link MAX_FRAME_BYTES}. A page holds at least one channel; one of
 * {@link MAX_CHANNEL_MEMBERS} members of the longest names is about 560 KiB, under this.
 */
export const MAX_CHANNEL_PAGE_BYTES = MAX_FRAME_BYTES - 64 * 1024;
/** What a channel adds on the wire beside its id, name and members (counted generously). */
export const CHANNEL_ENVELOPE_BYTES = 128;
/** What a member name adds on the wire beside its bytes (list pointer, NUL, padding). */
export const MEMBER_ENTRY_BYTES = 24;
/** Most pages a client reads of one list before it stops (a bound, never reached honestly). */
export const MAX_CLIENT_LIST_PAGES = 200;
/**
 * Default of `max_groups_per_user`: most channels (groups and DMs) one user is on, joined.
 * A commit or DM that would add a user past it makes a held invitation instead: the user is
 * on the roster, gets nothing of the channel, and can accept it once under the cap.
 */
export const MAX_GROUPS_PER_USER = 2_000;
/**
 * Most held invitations one user may have waiting; past it a commit that adds the user is
 * refused (`quota`) until they accept or decline some.
 */
export const MAX_HELD_INVITATIONS_PER_USER = 1_000;

// ---- client and server policy: retries, back-offs, intervals (one place for every number)

/** How often an own commit is retried after an epoch conflict. */
export const COMMIT_RETRIES = 5;
/** Groups get a self-update when our last commit in them is older than this. */
export const SELF_UPDATE_INTERVAL_MS = 24 * 3600 * 1000;
/** A broken member asks the group again after this long without an answer. */
export const REJOIN_RETRY_MS = 10 * 60 * 1000;
/** First delay before reconnecting a subscribed client (doubles up to RESUBSCRIBE_MAX_MS). */
export const RESUBSCRIBE_FIRST_MS = 1_000;
/** Longest delay between reconnects of a subscribed client. */
export const RESUBSCRIBE_MAX_MS = 30_000;
/** KeyPackages uploaded per suite at registration and kept on the server. */
export const KEY_PACKAGE_BATCH = 20;
/** Refill when the server holds fewer than this many (per suite). */
export const KEY_PACKAGE_REFILL_BELOW = 5;
/** How often the client checks its stock on the server when no Welcome used one. */
export const KEY_PACKAGE_CHECK_INTERVAL_MS = 10 * 60 * 1000;
/** KeyPackage lifetime (seconds). */
export const KEY_PACKAGE_LIFETIME_SECONDS = 30 * 24 * 3600;
/** How often the server purges expired messages, sessions and KeyPackages (ms). */
export const PURGE_INTERVAL_MS = 60_000;
/** Unread counts are counted up to this; above it they read `UNREAD_CAP + 1` ("999+"). */
export const UNREAD_CAP = 999;
/** Most graphemes in one reaction (`👍`, `👍🏽`, `🇫🇷` are one each). */
export const MAX_REACTION_GRAPHEMES = 3;
/** Most bytes (UTF-8) in one reaction. */
export const MAX_REACTION_BYTES = 64;
/** Most members' reactions kept on one message (one per member; more are dropped). */
export const MAX_REACTIONS_PER_MESSAGE = 256;

/** Admins a group's settings extension may list. */
export const MAX_GROUP_ADMINS = 256;
/** A group's name in its settings extension, in UTF-8 bytes. */
export const MAX_GROUP_SETTINGS_NAME_BYTES = 64;
/** A group's description (topic) in its settings extension, in UTF-8 bytes. */
export const MAX_GROUP_DESCRIPTION_BYTES = 512;
/** Shortest disappearing-message timer (seconds); 0 means off. */
export const MIN_DISAPPEARING_SECONDS = 30;
/** Longest disappearing-message timer (seconds): four weeks. */
export const MAX_DISAPPEARING_SECONDS = 4 * 7 * 24 * 3600;

/** How often a running client deletes expired disappearing messages (ms). */
export const EXPIRE_EVERY_MS = 10_000;

/**
 * Most message ids one receipt names (a larger batch is sent as several receipts): 100 ids
 * of 16 bytes keep a receipt under 2 KiB.
 */
export const MAX_RECEIPT_TARGETS = 100;
/** Most members' receipts kept on one of our messages (one per member). */
export const MAX_RECEIPTS_PER_MESSAGE = 2_000;
/**
 * Most application messages a client sends in one epoch, since the last it sent to every
 * member, to only some members (receipts go to the authors they name; typing indicators
 * reach only who is online). Each uses a generation of the sender's ratchet, so a member
 * who did not get them ratchets over them on the next one it gets, which ts-mls allows up
 * to `maximumForwardRatchetSteps` (1,000, src/mls/_state.ts). At this bound the next
 * receipt goes to every member (and typing indicators wait for it).
 */
export const MAX_NARROW_SENDS = 500;
/**
 * Delivered receipts for pushed messages go out at most this often per conversation (ms):
 * what arrives in between waits and goes out in one receipt (a sync sends at once). When
 * every member received every member's receipt, one receipt per push made each delivered
 * text cost about three more MLS messages to receive (docs/results.md).
 */
export const DELIVERED_RECEIPT_EVERY_MS = 1_000;

// --- ephemeral messages (typing indicators; src/server/delivery.ts) -----------------------
/** Largest payload of an ephemeral enqueue (bytes): a typing indicator is small. */
export const MAX_EPHEMERAL_BYTES = 2048;
/** Most ephemeral enqueues one connection may make per {@link EPHEMERAL_WINDOW_MS}. */
export const MAX_EPHEMERAL_PER_WINDOW = 20;
/** Window of the per-connection ephemeral rate limit (ms). */
export const EPHEMERAL_WINDOW_MS = 10_000;

// --- typing indicators (issue 21; src/client/client.ts `typing`, src/cli/_interactive.ts) --
/** Least time between two typing indicators a client sends to one conversation (ms). */
export const TYPING_INTERVAL_MS = 3_000;
/** How long a received typing indicator is shown (ms): two intervals, so one lost is fine. */
export const TYPING_SHOWN_MS = 6_000;

/**
 * A message of ours still queued when we processed our removal from a group fails "you were
 * removed"; a re-add (its Welcome) within this long after sends it after all (the client
 * wrote it on a state from before a removal it had not received yet: sim seeds 7061, 9048).
 */
export const READD_RESEND_MS = 10 * 60_000;
