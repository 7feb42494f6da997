/**
 * The mutants of `deno task mutate` (tests/mutate/main.ts): the project's security and
 * integrity checks, each removed or weakened once. Every one must make a test fail.
 *
 * To add one: name the check (`id`), quote text that occurs exactly once in `file` (`find`;
 * the runner refuses an entry whose text is gone or ambiguous), say what replaces it
 * (`replace`: usually the check disabled, e.g. `if (false) {`), why the check matters (`why`),
 * and the test files that should catch it (`tests`: as few as kill it, so the run stays
 * short). Mark it `quick` when those tests take seconds: CI runs the quick ones. Then run
 * `deno task mutate --only <id>`: `killed` is the goal; `survived` means a test is missing.
 *
 * @module
 */

/** One mutation. */
export interface Mutant {
  /** Short unique name. */
  id: string;
  /** File to mutate, relative to the project root. */
  file: string;
  /** Text that occurs exactly once in the file. */
  find: string;
  /** What replaces it. */
  replace: string;
  /** What the check defends. */
  why: string;
  /** Test files that must fail on the mutant. */
  tests: string[];
  /** Part of the fast subset CI runs. */
  quick?: boolean;
}

const LYING = "tests/lying_server_test.ts";
const RULES = "tests/server_rules_test.ts";

/** The list; grouped by layer. */
export const MUTANTS: Mutant[] = [
  // ---- client defences (against a lying server or a malicious member)
  {
    id: "client-key-pinning",
    file: "src/client/contacts.ts",
    find: "if (pinned && !constantTimeEqual(pinned, key)) {",
    replace: "if (false) {",
    why: "a server that swaps a contact's identity key must be refused (TOFU pinning)",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-roster-on-join",
    file: "src/client/inbox.ts",
    find: "await verifyRoster(joined.state, (u) => this.#contacts.key(u));",
    replace: "",
    why: "a Welcome naming a member with a key the directory does not vouch for is refused",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-binding-on-commit",
    file: "src/client/inbox.ts",
    find:
      "for (const a of r.added) checkCredentialBinding(a, await this.#contacts.key(a.username));",
    replace: "",
    why: "a commit adding an unbound credential must not be followed",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-mls-sender",
    file: "src/client/inbox.ts",
    find: "          sender: r.sender.username,",
    replace: "          sender: m.sender,",
    why: "the sender shown is the one MLS authenticates, not the server's claim",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-mls-inviter",
    file: "src/client/inbox.ts",
    find: "const inviter = joined.inviter;",
    replace: "const inviter = m.sender;",
    why: "the inviter shown is the Welcome's signer, not the server's claim",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-dm-roster",
    file: "src/client/inbox.ts",
    find: 'roster.length !== 2 || roster.join("\\n") !== expected.join("\\n")',
    replace: "false",
    why: "a DM is filed under a name only if its group holds exactly us and that peer",
    tests: [LYING],
    quick: true,
  },
  {
    id: "client-welcome-group-id",
    file: "src/client/inbox.ts",
    find: "if (toHex(joined.state.groupId) !== hex) {",
    replace: "if (false) {",
    why: "a Welcome must be for the group of the channel it came on",
    tests: [LYING, "tests/client_groups_test.ts"],
  },
  {
    id: "client-welcome-no-fork",
    file: "src/client/inbox.ts",
    find:
      "existing && !existing.broken && existing.leavingEpoch === undefined && !aloneIn(existing)",
    replace: "false",
    why: "a Welcome never replaces a working group that has other members (fork into a look-alike)",
    tests: ["tests/client_groups_test.ts"],
  },
  {
    id: "client-page-order",
    file: "src/client/receiver.ts",
    find: "const messages = [...page.messages].sort((a, b) => a.seq - b.seq);",
    replace: "const messages = page.messages;",
    why: "a page delivered out of order made later messages look applied: skipped and lost",
    tests: [LYING],
    quick: true,
  },
  // ---- MLS layer
  {
    id: "mls-binding-key",
    file: "src/mls/credential.ts",
    find: "if (!constantTimeEqual(member.signaturePublicKey, directoryKey)) {",
    replace: "if (false) {",
    why: "a member's MLS signature key must be the directory's identity key for that name",
    tests: ["tests/mls_group_test.ts", LYING],
    quick: true,
  },
  {
    id: "mls-join-duplicate-name",
    file: "src/mls/group.ts",
    find:
      'if (names.size !== all.length) throw new ValidationError("Group lists one username twice");',
    replace: "",
    why: "one username in two leaves would let a second device pose as the first",
    tests: ["tests/mls_group_test.ts"],
    quick: true,
  },
  // ---- server rules (delivery service)
  {
    id: "server-member-channel",
    file: "src/server/delivery.ts",
    find: "if (!c || !(await store.isMember(channelId, user))) {",
    replace: "if (!c) {",
    why: "only members read a channel's roster, enqueue or commit to it",
    tests: [RULES],
  },
  {
    id: "server-enqueue-kinds",
    file: "src/server/delivery.ts",
    find: 'if (req.messageKind === "commit" || req.messageKind === "welcome") {',
    replace: "if (false) {",
    why: "commits and Welcomes must take the commit path (epoch order, roster rules)",
    tests: [RULES],
  },
  {
    id: "server-enqueue-recipients",
    file: "src/server/delivery.ts",
    find: "          if (!members.includes(r)) {",
    replace: "          if (false) {",
    why: "a member may not send into the queue of someone outside the conversation",
    tests: [RULES],
  },
  {
    id: "server-commit-epoch",
    file: "src/server/delivery.ts",
    find: "header.epoch !== BigInt(req.epoch)",
    replace: "false",
    why: "a commit's claimed epoch must be the one its MLS header carries (ordering)",
    tests: [RULES],
  },
  {
    id: "server-commit-group",
    file: "src/server/delivery.ts",
    find: "!bytesEqual(header.groupId, req.channelId)",
    replace: "false",
    why: "a commit of another group must not advance this channel",
    tests: [RULES],
  },
  {
    id: "server-remove-member-only",
    file: "src/server/delivery.ts",
    find: "        for (const u of remove) {\n          if (!members.includes(u)) {",
    replace: "        for (const u of remove) {\n          if (false) {",
    why: "a commit may only remove members",
    tests: [RULES],
  },
  {
    id: "server-readd-needs-remove",
    file: "src/server/delivery.ts",
    find: "if (members.includes(u) && !remove.includes(u) && !firstDmCommit) {",
    replace: "if (false) {",
    why: "a member added again without removal would get a Welcome into a fork",
    tests: [RULES],
  },
  {
    id: "server-welcome-only-added",
    file: "src/server/delivery.ts",
    find: "        if (!add.includes(u)) {",
    replace: "        if (false) {",
    why: "a Welcome to anyone the commit does not add forks them into a look-alike group",
    tests: [RULES],
  },
  {
    id: "server-block-drops",
    file: "src/server/delivery.ts",
    find:
      'const blockers = req.messageKind === "application"\n        ? await store.blockersOf(me, recipients)\n        : [];',
    replace: "const blockers: string[] = [];",
    why: "a blocked user's messages take no room in the blocker's queue",
    tests: ["tests/client_consent_test.ts"],
  },
  {
    id: "server-kp-fetch-limit",
    file: "src/server/key_packages.ts",
    find: "if (!theirs.allowed) throw fetchLimited(`of ${username}'s`, theirs.retryAfterMs);",
    replace: "",
    why: "nobody drains a user's KeyPackages down to the reused last resort",
    tests: ["tests/adversarial_test.ts"],
  },
  {
    id: "server-one-subscription",
    file: "src/server/delivery.ts",
    find: "      SUBSCRIPTIONS.get(conn)?.();",
    replace: "",
    why: "each subscribe started a push loop: 300 on one stream grew the server by 310 MB",
    tests: ["tests/adversarial_test.ts"],
  },
  // ---- server store
  {
    id: "store-queue-full",
    file: "src/store/server/sqlite_server_store.ts",
    find: "if (depth >= this.#lim.maxQueueMessages && !unlimited) throw queueFull(this.#lim);",
    replace: "",
    why: "a recipient queue is bounded",
    tests: [RULES],
  },
  {
    id: "store-sender-share",
    file: "src/store/server/sqlite_server_store.ts",
    find: "Number(held?.n ?? 0) + 1 > share * this.#lim.maxSenderMessages ||",
    replace: "false ||",
    why: "one sender cannot fill another user's queue (the inbox jam of issue 10)",
    tests: ["tests/store_test.ts"],
  },
  {
    id: "store-page-bytes",
    file: "src/store/server/sqlite_server_store.ts",
    find: "if (take > 0 && bytes + size > maxBytes) break;",
    replace: "",
    why: "a fetch page that cannot be encoded jammed an inbox for 30 days",
    tests: ["tests/adversarial_test.ts"],
  },
  {
    id: "store-retention",
    file: "src/store/server/sqlite_server_store.ts",
    find: "const cutoff = this.#clock() - this.#lim.messageRetentionMs;",
    replace: "const cutoff = 0;",
    why: "a message past retention is never delivered, purged yet or not",
    tests: [RULES],
  },
  {
    id: "store-owner-only",
    file: "src/store/server/sqlite_server_store.ts",
    find: "        ownerOnly(path);\n",
    replace: "",
    why: "the database was world-readable (0644) outside the systemd unit's umask",
    tests: ["tests/server_ops_test.ts"],
  },
  {
    id: "server-cert-key-mismatch",
    file: "src/server/server.ts",
    find:
      "if (/KeyMismatch|keys may not be consistent/.test(String((e as Error)?.message ?? e))) {",
    replace: "if (false) {",
    why: "a certificate and key that do not match must be named as such, not as a network failure",
    tests: ["tests/server_ops_test.ts"],
  },
  // ---- names and consent
  {
    id: "names-case-insensitive",
    file: "src/names.ts",
    find: 'return input.normalize("NFKC").toLowerCase();',
    replace: 'return input.normalize("NFKC");',
    why: "`Bob` must not be a second account beside `bob`",
    tests: ["tests/names_test.ts"],
    quick: true,
  },
  {
    id: "client-consent-inviter",
    file: "src/client/inbox.ts",
    find: "!this.#consent.admits(inviter)",
    replace: "!this.#consent.admits(m.sender)",
    why: "a server naming a contact as sender must not turn a stranger's invitation into a join",
    tests: [LYING],
  },
  // ---- what a user sees
  {
    id: "terminal-sanitizer",
    file: "src/cli/_terminal.ts",
    find: "export function visible(s: string): string {\n  return escape(s, false);",
    replace: "export function visible(s: string): string {\n  return s;",
    why: "a peer's bytes must never reach the terminal as control sequences",
    tests: ["tests/terminal_test.ts"],
    quick: true,
  },
  // ---- server rules
  {
    id: "server-kp-owner-name",
    file: "src/server/key_packages.ts",
    find: "if (parsed.username !== username) {",
    replace: "if (false) {",
    why: "a user may only upload KeyPackages in their own name",
    tests: ["tests/server_test.ts"],
  },
  {
    id: "server-kp-owner-key",
    file: "src/server/key_packages.ts",
    find: "if (!constantTimeEqual(parsed.signaturePublicKey, identityKey)) {",
    replace: "if (false) {",
    why: "a KeyPackage must be signed by the uploader's published identity key",
    tests: ["tests/server_test.ts"],
  },
  {
    id: "server-kp-batch",
    file: "src/server/key_packages.ts",
    find: "if (req.packages.length + lastResorts.length > MAX_KEY_PACKAGE_BATCH) {",
    replace: "if (false) {",
    why: "bounds the work of one upload (answered before any package is parsed)",
    tests: [RULES],
  },
  {
    id: "server-invite-token",
    file: "src/server/accounts.ts",
    find: "if (!inviteOk(token)) {",
    replace: "if (false) {",
    why: "registration needs the server's invite token",
    tests: ["tests/auth_test.ts", "tests/server_test.ts"],
  },
  {
    id: "server-require-login",
    file: "src/server/accounts.ts",
    find:
      'if (conn.username === undefined) {\n    throw new AuthError("Not logged in: log in first", { code: "auth" });\n  }',
    replace: 'if (conn.username === undefined) return "";',
    why: "every request but login and health needs a session",
    tests: ["tests/adversarial_test.ts"],
  },
  {
    id: "server-bound-session-expiry",
    file: "src/server/accounts.ts",
    find: "if (bound !== undefined && Date.now() >= bound.expiresAt) {",
    replace: "if (false) {",
    why: "a connection bound to a session stops working when the session expires",
    tests: ["tests/server_test.ts", "tests/auth_test.ts"],
  },
  {
    id: "store-session-expiry",
    file: "src/store/server/sqlite_server_store.ts",
    find: '"JOIN users u ON u.uid = s.uid WHERE s.token_ref = ? AND s.expires_at > ?",',
    replace: '"JOIN users u ON u.uid = s.uid WHERE s.token_ref = ? AND s.expires_at > ? - 1e15",',
    why: "an expired session token must not resume",
    tests: ["tests/store_test.ts", "tests/adversarial_test.ts"],
  },
  // ---- stores
  {
    id: "store-db-key-check",
    file: "src/store/sealing.ts",
    find: "if (!constantTimeEqual(mine, stored)) {",
    replace: "if (false) {",
    why: "a wrong db_key must be refused before it seals anything",
    tests: ["tests/store_test.ts"],
    quick: true,
  },
  // ---- wire
  {
    id: "wire-frame-cap",
    file: "src/wire/framing.ts",
    find: "if (len > this.#max) {",
    replace: "if (false) {",
    why: "a peer announcing a huge frame is cut off before anything is buffered",
    tests: ["tests/wire_codec_test.ts"],
    quick: true,
  },
  // ---- crypto
  {
    id: "crypto-ed25519-verify",
    file: "src/crypto/identity.ts",
    find: "return verify(null, message, importPublicCached(publicKey), signature);",
    replace: "return true;",
    why: "a signature that does not verify must be refused",
    tests: ["tests/crypto_vectors_test.ts"],
    quick: true,
  },
  // ---- issue 12, part D: rehearsed upgrades, qpq server --check, config docs
  {
    id: "check-dry-run-on-copy",
    file: "src/store/server/check.ts",
    find: "const dryRun = await migrateCopy(db, `${await scratch()}/qpq.db`, options.dbKey);",
    replace: "const dryRun = await migrateCopy(db, path, options.dbKey);",
    why: "qpq server --check must never migrate (write) the live database, only a private copy",
    tests: ["tests/server_check_test.ts"],
  },
  {
    id: "check-integrity",
    file: "src/store/server/check.ts",
    find: 'if (integrity.length !== 1 || integrity[0] !== "ok") {',
    replace: "if (false) {",
    why: "qpq server --check must report a damaged database (SQLite integrity_check)",
    tests: ["tests/server_check_test.ts"],
  },
  {
    id: "docs-config-keys",
    file: "docs/operations.md",
    find: "| `fsync`                             |",
    replace: "| `fsync_` |",
    why: "docs/operations.md must list every server config key (the operator's only reference)",
    tests: ["tests/config_test.ts"],
    quick: true,
  },
  {
    id: "migrate-renumbered-history",
    file: "src/store/server/migrations.ts",
    find: "const r = renumber(db, renumbered, now, sealer);",
    replace: "const r = { top: current, applied: [], notices: [] };",
    why: "a database of the renumbered main-line builds (1bdd570..89c88b7) must migrate, not fail",
    tests: ["tests/upgrade_test.ts"],
  },
  {
    id: "migrate-move-later-refs",
    file: "src/store/server/migrations.ts",
    find: '...(hasColumn(db, "deliveries", "sender_uid")',
    replace: '...(false && hasColumn(db, "deliveries", "sender_uid")',
    why: "an account renamed by a late usernames migration keeps its deliveries' sender",
    tests: ["tests/upgrade_test.ts"],
    quick: true,
  },
  {
    id: "check-no-file-beside",
    file: "src/store/server/check.ts",
    find: "if (wal && await exists(`${path}-shm`)) {",
    replace: "if (true) {",
    why: "qpq server --check (often run as root) must not leave a -wal/-shm the server cannot open",
    tests: ["tests/server_check_test.ts"],
  },
  // ---- issue 12, part A: storage failures seen and survived, start-up errors, health counting
  {
    id: "storage-full-classified",
    file: "src/store/server/_storage_health.ts",
    find: ') return "full";',
    replace: ') return "io";',
    why: "a full disk is its own wire code (storage_full): the client keeps the message queued",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "storage-full-kept-queued",
    file: "src/client/outbox.ts",
    find: '  "storage_full",\n]);',
    replace: "]);",
    why: "a message the server could not store for lack of space is kept and sent later, not lost",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "storage-health-degraded",
    file: "src/server/services.ts",
    find: 'return h.status === "ok"',
    replace: 'return true || h.status === "ok"',
    why: "health says degraded (HTTP 503) while the store cannot write",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "storage-failure-logged-once",
    file: "src/store/server/_storage_health.ts",
    find: 'if (fault === this.#fault || this.#fault === "damaged") return;',
    replace: 'if (this.#fault === "damaged") return;',
    why: "repeats of a storage failure are counted, not logged again (no log flood)",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "storage-recovery-probe",
    file: "src/store/server/sqlite_server_store.ts",
    find: "      this.#health.wrote();",
    replace: "",
    why: "health turns ok again once the store can write (the probe's write)",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "startup-read-only-data-dir",
    file: "src/store/server/sqlite_server_store.ts",
    find: "        checkWritable(path);",
    replace: "",
    why: "a read-only data dir holding a good database is not called a foreign file",
    tests: ["tests/storage_startup_test.ts"],
  },
  {
    id: "startup-quick-check",
    file: "src/store/server/sqlite_server_store.ts",
    find: "if (path !== MEMORY_PATH) quickCheck(db, path);",
    replace: "",
    why: "a damaged page is found at start-up, with words that say restore a backup",
    tests: ["tests/storage_startup_test.ts"],
  },
  {
    id: "startup-damaged-not-foreign",
    file: "src/store/server/sqlite_server_store.ts",
    find: 'String(rows[0]?.quick_check) !== "ok") throw damaged(path);',
    replace: 'String(rows[0]?.quick_check) !== "ok") throw foreignFile(path);',
    why: "a damaged database never reads like a foreign file (an operator might delete it)",
    tests: ["tests/storage_startup_test.ts"],
  },
  {
    id: "startup-loose-data-dir-warned",
    file: "src/server/services.ts",
    find: "if (mode !== null && (mode & 0o077) !== 0) {",
    replace: "if (mode !== null && (mode & 0o077) !== 0 && Date.now() < 0) {",
    why: "a data dir open to other users is warned about",
    tests: ["tests/storage_startup_test.ts"],
    quick: true,
  },
  {
    id: "client-ack-refused-for-space",
    file: "src/client/receiver.ts",
    find:
      'if (!(e instanceof QpqError) || (e.code !== "storage_full" && e.code !== "storage")) throw e;',
    replace: "throw e;",
    why: "an ack the server cannot store (disk full) does not stop receiving",
    tests: ["tests/storage_health_test.ts"],
  },
  {
    id: "health-counts-open-connections",
    file: "src/server/server.ts",
    find: "if (streams.size === 0) stats.connections--;",
    replace: "if (false) stats.connections--;",
    why: "health counts only open connections",
    tests: ["tests/health_connections_test.ts"],
    quick: true,
  },
  {
    id: "client-close-waits-for-server",
    file: "src/wire/rpc.ts",
    find: "new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS))),",
    replace: "Promise.resolve(),",
    why: "a closing client's end of stream reaches the server before its process exits",
    tests: ["tests/health_connections_test.ts"],
    quick: true,
  },
  // ---- issue 12, part C: the client never reports success the server refused
  {
    id: "client-refused-commit-merged",
    file: "src/client/groups.ts",
    find: "const back = await discardPendingCommit(state);",
    replace: "const back = mergePendingCommit(state);",
    why: "a commit the server refused must be discarded, never applied (the device would fork)",
    tests: ["tests/client_groups_test.ts"],
  },
  {
    id: "client-refused-commit-reported",
    file: "src/client/groups.ts",
    find: "          throw outcome;\n",
    replace: "          return false;\n",
    why: "invite, remove and update report success only for a commit the server accepted",
    tests: ["tests/client_groups_test.ts"],
  },
  {
    id: "client-refused-leave-withdrawn",
    file: "src/client/groups.ts",
    find: "this.#save(rest, withdrawOwnProposals(decodeGroupState(now.state)));",
    replace: "void rest;",
    why: "a leave the server refused leaves the leaver a member (listed, usable), not hidden",
    tests: ["tests/client_groups_test.ts"],
  },
  {
    id: "client-withdraw-own-proposal",
    file: "src/mls/group.ts",
    find: "p.senderLeafIndex !== own",
    replace: "true",
    why: "a withdrawn leave must not ride along in the leaver's next commit (MLS forbids it)",
    tests: ["tests/client_groups_test.ts"],
  },
  {
    id: "client-stale-commit-breaks",
    file: "src/client/inbox.ts",
    find: '(m.messageKind === "commit" && !this.#applied(record, m.payload))',
    replace: '(m.messageKind === "commit" && m.seq < 0)',
    why: "a commit of a passed epoch (the server's history is not ours, e.g. restored) must " +
      "not be ignored: members and remove would disagree, and the group would fork",
    tests: ["tests/cli_groups_test.ts"],
  },
  {
    id: "client-replayed-commit-ignored",
    file: "src/client/inbox.ts",
    find: '(m.messageKind === "commit" && !this.#applied(record, m.payload))',
    replace: '(m.messageKind === "commit")',
    why: "a replayed commit this device applied is ignored, not taken for another history",
    tests: [LYING],
  },
  {
    id: "client-server-behind",
    file: "src/client/groups.ts",
    find: "if (conflictAt !== undefined && state.epoch === conflictAt) {",
    replace: "if (false) {",
    why: "a conflict catching up cannot resolve is refused at once with its likely cause",
    tests: ["tests/cli_groups_test.ts"],
  },
  // ---- issue 12, part B: backups that restore cleanly
  {
    id: "restore-refuses-live-database",
    file: "src/server/backup.ts",
    find: "lock = lockDatabase(db);",
    replace: "lock = { release() {} } as unknown as FileLock;",
    why: "a restore must not replace the database under a running server",
    tests: ["tests/backup_restore_test.ts"],
  },
  {
    id: "restore-seq-bump",
    file: "src/store/server/sqlite_server_store.ts",
    find: "const seqFloor = Math.max(top + RESTORE_SEQ_GAP, this.#clock() * 1000);",
    replace: "const seqFloor = top;",
    why: "after a restore, sequence numbers handed out since the backup must not be reused " +
      "(clients past them would skip new messages)",
    tests: ["tests/backup_restore_test.ts"],
  },
  {
    id: "client-resend-after-restore",
    file: "src/client/inbox.ts",
    find: "s.requeueSent(this.#ctx.now() - SENT_KEEP_MS);",
    replace: "",
    why: "messages the restored server lost are sent again by their senders",
    tests: ["tests/backup_restore_test.ts"],
  },
  {
    id: "client-restore-gap-not-expiry",
    file: "src/client/receiver.ts",
    find: "if (first > cursor + 1 && cursor > 0 && !restored) {",
    replace: "if (first > cursor + 1 && cursor > 0) {",
    why: "the numbers a restore skips are not reported as a six-digit expiry count",
    tests: ["tests/backup_restore_test.ts"],
  },
  {
    id: "client-restore-group-check",
    file: "src/client/groups.ts",
    find: "if (theirs !== undefined && theirs >= ours) continue;",
    replace: "if (theirs === undefined || theirs >= 0) continue;",
    why: "a group the restore rewound is named in one line, not left to fail obscurely",
    tests: ["tests/backup_restore_test.ts"],
  },
  // ---- issue 12, review: what a request line counts
  {
    id: "client-request-count",
    file: "src/client/inbox.ts",
    find: 'this.#ctx.emit({ kind: "request", conversation: conv, from, messages });',
    replace: 'this.#ctx.emit({ kind: "request", conversation: conv, from, messages: 1 });',
    why: "a stranger's three messages in one fetch were reported as '1 message'",
    tests: ["tests/client_consent_test.ts"],
    quick: true,
  },
];
