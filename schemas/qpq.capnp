# qpq wire protocol, version 1.
#
# Every QUIC stream carries length-prefixed frames: a 4-byte big-endian length followed by
# one unpacked Cap'n Proto message whose root is `Frame`. A client sends `Request`s; the
# server answers each with a `Response` carrying the same `requestId`. After `subscribe`
# the server also sends `Push` frames carrying the subscribe request's id.
#
# Compatibility rule: fields and union members are only ever appended. A peer that gets
# a frame whose `version` it does not speak answers with error `unsupported_version`.

@0xc28bec2398bf3844;

struct Frame {
  version @0 :UInt16;       # wire version; this file describes version 1
  requestId @1 :UInt64;     # chosen by the client, echoed by the server
  body :union {
    request @2 :Request;
    response @3 :Response;
    push @4 :Push;
  }
}

# ---------------------------------------------------------------- requests

struct Request {
  union {
    ping @0 :Ping;
    health @1 :Void;

    # Authentication Service: OPAQUE (RFC 9807) registration and login.
    registerStart @2 :RegisterStart;
    registerFinish @3 :RegisterFinish;
    loginStart @4 :LoginStart;
    loginFinish @5 :LoginFinish;
    resume @6 :Resume;               # bind this connection to an existing session token
    logout @7 :Void;

    # Identity directory.
    publishIdentityKey @8 :PublishIdentityKey;
    fetchIdentityKey @9 :UserRef;

    # KeyPackage directory.
    uploadKeyPackages @10 :UploadKeyPackages;
    fetchKeyPackage @11 :UserRef;    # consumes one package of that user
    countKeyPackages @12 :Void;      # own remaining packages

    # Delivery Service.
    enqueue @13 :Enqueue;
    fetch @14 :Fetch;
    ack @15 :Ack;
    subscribe @16 :Subscribe;

    # Channels (DMs and groups) with server-enforced membership.
    createDm @17 :UserRef;
    createGroup @18 :CreateGroup;
    listChannels @19 :Void;
    members @20 :ChannelRef;
    commit @21 :Commit;              # MLS commit + roster change, ordered per epoch

    # KeyPackage directory, per cipher suite (appended).
    countKeyPackagesForSuite @22 :SuiteRef;   # own remaining packages of one suite

    # Consent (appended): the server drops a blocked user's DMs, application messages and
    # Welcomes to the blocker (answered as if delivered; commits still go through). Both
    # are idempotent; block answers `ok`, unblock `unblocked` (since issue 21; `ok` before).
    block @23 :UserRef;
    unblock @24 :UserRef;

    # Sessions and passwords (appended). logoutEverywhere ends every session of the
    # account (answers `loggedOut`). A password change needs the session AND a fresh OPAQUE
    # login with the current password: loginStart, then changePasswordStart (its KE3 and a
    # new OPAQUE RegistrationRequest), then changePasswordFinish (the new record), on the
    # same connection; it ends every other session and answers `passwordChanged`.
    logoutEverywhere @25 :Void;
    changePasswordStart @26 :ChangePasswordStart;
    changePasswordFinish @27 :ChangePasswordFinish;

    # Lists that other people's actions make grow are paged (appended, issue 18).
    # listChannelsPage answers `channels` with at most MAX_CHANNEL_PAGE channels after the
    # cursor, within a byte budget, and `more` when there are more; `held: true` lists the
    # held invitations instead (groups someone added us to while we were at
    # max_groups_per_user). answerInvitation accepts (under the cap) or declines one; it
    # answers `ok`.
    listChannelsPage @28 :ChannelPage;
    answerInvitation @29 :InvitationAnswer;
  }
}

struct Ping {
  clientTimeMs @0 :UInt64;
  payload @1 :Data;                  # echoed back (bounded)
}

struct RegisterStart {
  username @0 :Text;
  request @1 :Data;                  # OPAQUE RegistrationRequest
  authToken @2 :Text;                # server invite token
}

struct RegisterFinish {
  username @0 :Text;
  record @1 :Data;                   # OPAQUE RegistrationRecord
  authToken @2 :Text;
  identityKey @3 :Data;              # Ed25519 public key, 32 bytes
}

struct LoginStart {
  username @0 :Text;
  request @1 :Data;                  # OPAQUE KE1
}

struct LoginFinish {
  username @0 :Text;
  finish @1 :Data;                   # OPAQUE KE3
  loginId @2 :Data;                  # from LoginStarted, binds start and finish
}

struct Resume {
  token @0 :Data;
}

struct PublishIdentityKey {
  key @0 :Data;
}

struct UserRef {
  username @0 :Text;
  cipherSuite @1 :UInt16;            # fetchKeyPackage only: MLS suite id, 0 = any (ignored elsewhere)
}

struct SuiteRef {
  cipherSuite @0 :UInt16;            # MLS cipher suite id, 0 = any
}

struct UploadKeyPackages {
  packages @0 :List(Blob);           # MLS KeyPackages (TLS encoding), any qpq suites
  lastResort @1 :Data;               # optional: replaces the last-resort package of its suite
  lastResorts @2 :List(Blob);        # optional: last-resort packages, at most one per suite
}

enum MessageKind {
  application @0;
  commit @1;
  welcome @2;
  proposal @3;
  rejoin @4;                         # payload: a fresh public KeyPackage; "re-add me"
}

struct Enqueue {
  channelId @0 :Data;
  messageId @1 :Data;                # 16 bytes, UUIDv7 chosen by the sender
  payload @2 :Data;                  # opaque ciphertext
  messageKind @3 :MessageKind;
  epoch @4 :UInt64;                  # sender's MLS epoch (informational)
  recipients @5 :List(Text);         # empty = every other member of the channel
  ephemeral @6 :Bool;                # appended: forward only to the recipients' live
                                     # subscriptions (pushed with seq 0), store nothing;
                                     # application only, at most MAX_EPHEMERAL_BYTES
}

struct Fetch {
  afterSeq @0 :UInt64;
  limit @1 :UInt32;
}

struct Ack {
  uptoSeq @0 :UInt64;
}

struct Subscribe {
  afterSeq @0 :UInt64;               # push everything after this sequence number
}

struct CreateGroup {
  name @0 :Text;
}

struct ChannelRef {
  channelId @0 :Data;
}

struct Welcome {
  username @0 :Text;
  payload @1 :Data;                  # MLS Welcome for that user
}

struct Commit {
  channelId @0 :Data;
  epoch @1 :UInt64;                  # the epoch the commit was created in
  messageId @2 :Data;
  payload @3 :Data;                  # MLS commit message (to existing members)
  add @4 :List(Text);                # roster additions
  remove @5 :List(Text);             # roster removals
  welcomes @6 :List(Welcome);         # v1.0 form: one entry per new member (superseded)
  welcome @7 :Data;                    # the MLS Welcome, once, for every user in welcomeFor
  welcomeFor @8 :List(Text);
}

# ---------------------------------------------------------------- responses

struct Response {
  union {
    error @0 :Error;
    ok @1 :Void;
    pong @2 :Pong;
    health @3 :Health;
    registerStarted @4 :Blob;        # OPAQUE RegistrationResponse
    loginStarted @5 :LoginStarted;
    session @6 :Session;
    identityKey @7 :IdentityKey;
    keyPackage @8 :Blob;
    keyPackageCount @9 :Count;
    enqueued @10 :Enqueued;
    messages @11 :Messages;
    channel @12 :ChannelInfo;
    channels @13 :Channels;
    memberList @14 :MemberList;
    committed @15 :Enqueued;

    # Sessions and passwords (appended).
    loggedOut @16 :Count;                         # sessions ended
    passwordChangeStarted @17 :PasswordChangeStarted;
    passwordChanged @18 :PasswordChanged;

    # Consent (appended, issue 21): unblock's answer, how many of the blocked user's
    # messages the block dropped (0 when there was no block).
    unblocked @19 :Count;
  }
}

struct Error {
  code @0 :Text;                     # stable code, see src/errors.ts
  message @1 :Text;                  # one human sentence, no secrets
}

struct Pong {
  clientTimeMs @0 :UInt64;
  serverTimeMs @1 :UInt64;
  payload @2 :Data;
}

struct Health {
  version @0 :Text;
  wireVersion @1 :UInt16;
  uptimeSeconds @2 :UInt64;
  connectedClients @3 :UInt32;
  queueDepth @4 :UInt64;
  status @5 :Text;                   # "ok" or "degraded" (older servers: a short reason)
  reason @6 :Text;                   # why "degraded", e.g. "storage: disk full"; "" when ok
}

struct Blob {
  data @0 :Data;
}

struct LoginStarted {
  response @0 :Data;                 # OPAQUE KE2
  loginId @1 :Data;
}

struct Session {
  token @0 :Data;
  expiresAtMs @1 :UInt64;
  username @2 :Text;
}

struct IdentityKey {
  username @0 :Text;
  key @1 :Data;
}

struct Count {
  count @0 :UInt32;
}

struct Enqueued {
  duplicate @0 :Bool;                # true when (sender, messageId) was stored before
  recipients @1 :UInt32;
}

struct Message {
  seq @0 :UInt64;                    # recipient queue sequence number
  channelId @1 :Data;
  sender @2 :Text;
  messageId @3 :Data;
  payload @4 :Data;
  messageKind @5 :MessageKind;
  epoch @6 :UInt64;
  sentAtMs @7 :UInt64;
  channelName @8 :Text;              # Welcome only: the group's name ("" for a DM), so a member
  channelKind @9 :ChannelKind;       # removed again before reading its queue still knows it
  serverNotice @10 :UInt16;          # 0: a message. Else a notice from the server to the queue's
                                     # owner (empty channelId, sender = the owner, kind
                                     # application, empty payload): 1 = your KeyPackages run
                                     # low or your last resort was handed out (refill, rotate).
                                     # A number, not an enum: older readers ignore the field and
                                     # drop the message (no channel), unknown numbers are ignored.
                                     # 2 = the server was restored from a backup; the payload is
                                     # a RestoreNotice. (No field is appended here for it: with a
                                     # larger data section, capnp-es 0.0.16 failed to read a list
                                     # of the smaller Message.)
}

# The payload of a restore notice (Message.serverNotice 2): what the restore rewound. From
# the server, read with the frame decoder's caps.
struct RestoreNotice {
  backupTakenAtMs @0 :UInt64;        # when the backup was taken (ms, 0 = unknown)
  backupQueueSeq @1 :UInt64;         # the last sequence number of this queue in the backup;
                                     # numbers after it, up to the notice's, were handed out by
                                     # the lost history and are skipped (not an expiry)
}

struct Messages {
  messages @0 :List(Message);
  more @1 :Bool;
}

enum ChannelKind {
  dm @0;
  group @1;
}

struct ChannelInfo {
  channelId @0 :Data;
  channelKind @1 :ChannelKind;
  name @2 :Text;
  members @3 :List(Text);
  epoch @4 :UInt64;                  # last accepted commit epoch + 1 (0 = no commit yet)
}

struct Channels {
  channels @0 :List(ChannelInfo);
  more @1 :Bool;                     # listChannelsPage: more after the last one
}

struct MemberList {
  members @0 :List(Text);
}

# ---------------------------------------------------------------- push

struct Push {
  messages @0 :List(Message);
}

# ---------------------------------------------------------------- message content

# The plaintext of an MLS application message (the server never sees it). A reader that
# meets a body member it does not know says so ("upgrade qpq") instead of guessing.
struct Content {
  version @0 :UInt16;                # 1
  messageId @1 :Data;                # 16 bytes, the UUIDv7 the sender chose
  sentAtMs @2 :UInt64;               # sender's clock
  body :union {
    text @3 :Text;
    reserved @4 :Void;               # a union needs two members; never sent, refused on read
    reaction @5 :Reaction;           # a member's reaction to a message (appended)
    edit @6 :Edit;                   # the author's new text of a message (appended)
    deletion @7 :Deletion;           # the author deletes a message for everyone (appended)
    receipt @9 :Receipt;             # delivered / read receipt for messages (appended)
    typing @10 :Typing;              # the sender is typing (sent ephemeral only; appended)
  }
  replyTo @8 :Data;                  # text: the message id (16 bytes) it answers; empty = none
}

# ---------------------------------------------------------------- password change (appended)

struct ChangePasswordStart {
  loginId @0 :Data;                  # from LoginStarted of a fresh loginStart on this connection
  finish @1 :Data;                   # OPAQUE KE3 with the current password
  request @2 :Data;                  # OPAQUE RegistrationRequest with the new password
}

struct ChangePasswordFinish {
  changeId @0 :Data;                 # from PasswordChangeStarted
  record @1 :Data;                   # OPAQUE RegistrationRecord with the new password
}

struct PasswordChangeStarted {
  response @0 :Data;                 # OPAQUE RegistrationResponse
  changeId @1 :Data;
}

struct PasswordChanged {
  token @0 :Data;                    # a fresh session token for this device
  expiresAtMs @1 :UInt64;
  sessionsEnded @2 :UInt32;          # other sessions of the account that were ended
}

# ---------------------------------------------------------------- paged lists (appended)

struct ChannelPage {
  after @0 :Data;                    # channel id of the last one of the previous page; empty = from the start
  held @1 :Bool;                     # list held invitations instead of channels
}

struct InvitationAnswer {
  channelId @0 :Data;
  accept @1 :Bool;                   # false = decline (leave the roster)
}

# ---------------------------------------------------------------- content kinds (appended)

# A member's reaction to a message of the same conversation: one per member and message
# (a newer one replaces theirs; by the sender's clock). Empty emoji = withdrawn.
struct Reaction {
  target @0 :Data;                   # message id (16 bytes)
  emoji @1 :Text;                    # at most MAX_REACTION_GRAPHEMES graphemes and MAX_REACTION_BYTES
}

# The new text of a message. Receivers apply it only when the MLS sender wrote the target.
struct Edit {
  target @0 :Data;                   # message id (16 bytes)
  text @1 :Text;
}

# Delete a message for everyone. Receivers apply it only when the MLS sender wrote the target.
struct Deletion {
  target @0 :Data;                   # message id (16 bytes)
}

# A member got (or read) messages of the same conversation: one receipt covers up to
# MAX_RECEIPT_TARGETS message ids. Receivers apply it only to their own messages, from the
# MLS sender; never shown as a message.
struct Receipt {
  targets @0 :Data;                  # message ids, 16 bytes each, concatenated (1 to 100)
  read @1 :Bool;                     # false = delivered (stored), true = read
}

# The sender is typing (active) in this conversation, or stopped. Sent only as an ephemeral
# enqueue (pushed with seq 0 to live subscriptions, stored nowhere); receivers show it for a
# few seconds and never store it. One arriving in a queued (seq > 0) message is ignored.
struct Typing {
  active @0 :Bool;
}
