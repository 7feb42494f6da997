/**
 * MLS KeyPackages for qpq: creation (client side) and strict parsing (server side, on
 * upload, and client side, before adding a member).
 *
 * A KeyPackage carries a basic credential (identity = UTF-8 username), the member's
 * Ed25519 identity key as its leaf signature key, a fresh HPKE init key and a fresh leaf
 * HPKE key. Its private part (the two HPKE private keys, never the identity key) is
 * serialized by {@link createKeyPackage} for the caller to store until a Welcome uses it.
 *
 * @module
 */

import type { Capabilities, Extension, KeyPackage } from "ts-mls";
import { decodeMlsMessage, encodeMlsMessage, generateKeyPackageWithKey } from "ts-mls";
import { makeKeyPackageRef, verifyKeyPackage } from "ts-mls/keyPackage.js";
import { verifyLeafNodeSignatureKeyPackage } from "ts-mls/leafNode.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { constantTimeEqual, utf8, zeroize } from "../bytes.ts";
import { UsageError, ValidationError } from "../errors.ts";
import {
  KEY_PACKAGE_CLOCK_SKEW_SECONDS,
  MAX_KEY_PACKAGE_BYTES,
  MAX_KEY_PACKAGE_LIFETIME_SECONDS,
} from "../limits.ts";
import { Reader, Writer } from "./_codec.ts";
import { GROUP_SETTINGS_EXTENSION } from "./settings.ts";
import {
  ED25519_KEY_BYTES,
  isMlsSuiteName,
  mapMlsError,
  SUITE_IDS,
  suiteFromId,
  usernameFromIdentity,
  usernameOfCredential,
} from "./_state.ts";
import { DEFAULT_SUITE, getCiphersuite, type MlsSuiteName } from "./provider.ts";

/** An Ed25519 identity key pair as raw bytes (32-byte seed, 32-byte public key). */
export interface SignatureKeyPair {
  /** Ed25519 public key, 32 bytes. */
  readonly publicKey: Uint8Array;
  /** Ed25519 private key: the raw 32-byte seed (RFC 8032). */
  readonly privateKey: Uint8Array;
}

/** Extension type of `last_resort` (draft-ietf-mls-extensions), carried with empty data. */
export const LAST_RESORT_EXTENSION = 0x000a;

/** Options of {@link createKeyPackage}. */
export interface CreateKeyPackageOptions {
  /** Our username; becomes the basic credential identity. */
  readonly username: string;
  /** Our Ed25519 identity key pair; its public key becomes the leaf signature key. */
  readonly identity: SignatureKeyPair;
  /** Cipher suite of the groups this KeyPackage can join (default: X-Wing). */
  readonly suite?: MlsSuiteName;
  /** Validity from now, in seconds (1 .. MAX_KEY_PACKAGE_LIFETIME_SECONDS). */
  readonly lifetimeSeconds: number;
  /** Mark as last resort: the server hands it out repeatedly when no other is left. */
  readonly lastResort?: boolean;
  /** Current time in Unix seconds (default: the clock); for tests. */
  readonly now?: number;
}

/** Result of {@link createKeyPackage}. */
export interface CreatedKeyPackage {
  /** TLS-encoded MLSMessage(KeyPackage) to upload. Public. */
  readonly publicPackage: Uint8Array;
  /** Serialized private part (HPKE private keys + the public package). SECRET. */
  readonly privatePackage: Uint8Array;
  /** KeyPackageRef (RFC 9420 §5.2), identifies this KeyPackage. */
  readonly ref: Uint8Array;
}

/** What {@link parseKeyPackage} learned from a verified KeyPackage. */
export interface ParsedKeyPackage {
  /** Username from the basic credential. */
  readonly username: string;
  /** Ed25519 leaf signature key (the member's identity key), 32 bytes. */
  readonly signaturePublicKey: Uint8Array;
  /** Cipher suite. */
  readonly suite: MlsSuiteName;
  /** Start of validity, Unix seconds. */
  readonly notBefore: bigint;
  /** End of validity, Unix seconds. */
  readonly notAfter: bigint;
  /** KeyPackageRef. */
  readonly ref: Uint8Array;
  /** True when it carries the last_resort extension. */
  readonly lastResort: boolean;
}

/** Options of {@link parseKeyPackage}. */
export interface ParseKeyPackageOptions {
  /** Refuse any other suite. */
  readonly suite?: MlsSuiteName;
  /** Current time in Unix seconds (default: the clock). */
  readonly now?: number;
}

/** Public key length of each suite's HPKE KEM. */
const HPKE_PUBLIC_KEY_BYTES: Readonly<Record<MlsSuiteName, number>> = {
  MLS_256_XWING_AES256GCM_SHA512_Ed25519: 1216,
  MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: 32,
};

const PRIVATE_PACKAGE_VERSION = 1;

/**
 * Check an identity key pair's shape and that the public key matches the seed.
 * Returns a copy of the private seed for ts-mls (the caller's buffer stays its own).
 */
export function checkIdentity(identity: SignatureKeyPair): Uint8Array {
  if (
    !(identity.publicKey instanceof Uint8Array) || !(identity.privateKey instanceof Uint8Array) ||
    identity.publicKey.length !== ED25519_KEY_BYTES ||
    identity.privateKey.length !== ED25519_KEY_BYTES
  ) {
    throw new UsageError("Identity key pair must be a 32-byte Ed25519 seed and public key");
  }
  if (!constantTimeEqual(ed25519.getPublicKey(identity.privateKey), identity.publicKey)) {
    throw new UsageError("Identity public key does not match its private key");
  }
  return identity.privateKey.slice();
}

/** Throw UsageError unless `username` is a valid credential identity. */
export function checkUsername(username: string): Uint8Array {
  const id = utf8(username);
  if (usernameFromIdentity(id) !== username) {
    throw new UsageError("Username is not valid for an MLS credential");
  }
  return id;
}

function capabilitiesFor(suite: MlsSuiteName, lastResort: boolean): Capabilities {
  return {
    versions: ["mls10"],
    ciphersuites: [suite],
    extensions: lastResort
      ? [LAST_RESORT_EXTENSION, GROUP_SETTINGS_EXTENSION]
      : [GROUP_SETTINGS_EXTENSION],
    proposals: [],
    credentials: ["basic"],
  };
}

/**
 * Create a KeyPackage for `username` signed with the identity key.
 *
 * @returns the public package to upload, the private package to keep secret, and its ref
 * @throws UsageError for a bad username, identity key pair or lifetime
 */
export async function createKeyPackage(opts: CreateKeyPackageOptions): Promise<CreatedKeyPackage> {
  const suite = opts.suite ?? DEFAULT_SUITE;
  if (!isMlsSuiteName(suite)) throw new UsageError("Unsupported MLS cipher suite");
  const identity = checkUsername(opts.username);
  if (
    !Number.isSafeInteger(opts.lifetimeSeconds) || opts.lifetimeSeconds < 1 ||
    opts.lifetimeSeconds > MAX_KEY_PACKAGE_LIFETIME_SECONDS - KEY_PACKAGE_CLOCK_SKEW_SECONDS
  ) {
    throw new UsageError("KeyPackage lifetime is out of range");
  }
  const signKey = checkIdentity(opts.identity);
  const now = BigInt(Math.floor(opts.now ?? Date.now() / 1000));
  const lastResort = opts.lastResort === true;
  const extensions: Extension[] = lastResort
    ? [{ extensionType: LAST_RESORT_EXTENSION, extensionData: new Uint8Array(0) }]
    : [];
  const cs = await getCiphersuite(suite);
  let kp;
  try {
    kp = await generateKeyPackageWithKey(
      { credentialType: "basic", identity },
      capabilitiesFor(suite, lastResort),
      {
        notBefore: now - BigInt(KEY_PACKAGE_CLOCK_SKEW_SECONDS),
        notAfter: now + BigInt(opts.lifetimeSeconds),
      },
      extensions,
      { signKey, publicKey: opts.identity.publicKey.slice() },
      cs,
    );
  } catch (e) {
    zeroize(signKey);
    throw mapMlsError(e, "Cannot create KeyPackage", false);
  }
  zeroize(signKey);
  const publicPackage = encodeMlsMessage({
    version: "mls10",
    wireformat: "mls_key_package",
    keyPackage: kp.publicPackage,
  });
  const ref = await makeKeyPackageRef(kp.publicPackage, cs.hash);
  const privatePackage = new Writer()
    .u8(PRIVATE_PACKAGE_VERSION)
    .u16(SUITE_IDS[suite])
    .bytes(publicPackage)
    .bytes(kp.privatePackage.initPrivateKey)
    .bytes(kp.privatePackage.hpkePrivateKey)
    .finish();
  zeroize(kp.privatePackage.initPrivateKey, kp.privatePackage.hpkePrivateKey);
  return { publicPackage, privatePackage, ref };
}

/** A decoded private package (folder-private use). */
export interface DecodedPrivatePackage {
  readonly suite: MlsSuiteName;
  readonly publicPackage: Uint8Array;
  readonly keyPackage: KeyPackage;
  readonly initPrivateKey: Uint8Array;
  readonly hpkePrivateKey: Uint8Array;
}

/**
 * Decode a private package made by {@link createKeyPackage}. The returned keys are copies
 * the caller must zero.
 */
export function decodePrivatePackage(bytes: Uint8Array): DecodedPrivatePackage {
  const r = new Reader(bytes, "Private KeyPackage");
  if (r.u8() !== PRIVATE_PACKAGE_VERSION) {
    throw new ValidationError("Private KeyPackage has an unknown version", {
      code: "unsupported_version",
    });
  }
  const suite = suiteFromId(r.u16());
  if (suite === undefined) throw new ValidationError("Private KeyPackage has an unknown suite");
  const publicPackage = r.bytes(MAX_KEY_PACKAGE_BYTES).slice();
  const initPrivateKey = r.bytes(4096).slice();
  const hpkePrivateKey = r.bytes(4096).slice();
  r.end();
  const keyPackage = decodeKeyPackageMessage(publicPackage);
  if (keyPackage.cipherSuite !== suite) {
    throw new ValidationError("Private KeyPackage suite does not match its public part");
  }
  return { suite, publicPackage, keyPackage, initPrivateKey, hpkePrivateKey };
}

/** Decode MLSMessage(KeyPackage) bytes without verifying (bounded, exact). */
export function decodeKeyPackageMessage(bytes: Uint8Array): KeyPackage {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw new ValidationError("KeyPackage is empty");
  }
  if (bytes.length > MAX_KEY_PACKAGE_BYTES) {
    throw new ValidationError("KeyPackage is too large", { code: "too_large" });
  }
  let r;
  try {
    r = decodeMlsMessage(bytes, 0);
  } catch (e) {
    throw new ValidationError("KeyPackage does not decode", { cause: e });
  }
  if (r === undefined) throw new ValidationError("KeyPackage does not decode");
  const [msg, len] = r;
  if (len !== bytes.length) throw new ValidationError("KeyPackage has trailing bytes");
  if (msg.version !== "mls10" || msg.wireformat !== "mls_key_package") {
    throw new ValidationError("Message is not an MLS 1.0 KeyPackage");
  }
  return msg.keyPackage;
}

/**
 * Verify a KeyPackage strictly and return who it belongs to. Checks: size bound, exact
 * decoding, MLS 1.0, a qpq suite (and the expected one if given), basic credential with a
 * valid username, 32-byte Ed25519 signature key, HPKE key sizes, init key distinct from
 * the leaf key, both signatures, lifetime covering now and no longer than the maximum,
 * capabilities listing the suite and basic credentials, and no extension but last_resort.
 *
 * @param bytes TLS-encoded MLSMessage(KeyPackage)
 * @throws ValidationError (codes "validation" or "too_large") on any failure
 */
export async function parseKeyPackage(
  bytes: Uint8Array,
  opts: ParseKeyPackageOptions = {},
): Promise<ParsedKeyPackage> {
  const { parsed } = await verifyKeyPackageBytes(bytes, opts);
  return parsed;
}

/** {@link parseKeyPackage} that also returns the decoded ts-mls KeyPackage. */
export async function verifyKeyPackageBytes(
  bytes: Uint8Array,
  opts: ParseKeyPackageOptions = {},
): Promise<{ parsed: ParsedKeyPackage; keyPackage: KeyPackage }> {
  const kp = decodeKeyPackageMessage(bytes);
  const suite = kp.cipherSuite;
  if (!isMlsSuiteName(suite)) throw new ValidationError("KeyPackage uses an unsupported suite");
  if (opts.suite !== undefined && suite !== opts.suite) {
    throw new ValidationError("KeyPackage uses the wrong suite");
  }
  const leaf = kp.leafNode;
  if (leaf.leafNodeSource !== "key_package") {
    throw new ValidationError("KeyPackage leaf has the wrong source");
  }
  const username = usernameOfCredential(leaf.credential);
  if (username === undefined) throw new ValidationError("KeyPackage credential is not valid");
  if (leaf.signaturePublicKey.length !== ED25519_KEY_BYTES) {
    throw new ValidationError("KeyPackage signature key is not an Ed25519 key");
  }
  const hpkeLen = HPKE_PUBLIC_KEY_BYTES[suite];
  if (kp.initKey.length !== hpkeLen || leaf.hpkePublicKey.length !== hpkeLen) {
    throw new ValidationError("KeyPackage HPKE key has the wrong size");
  }
  if (constantTimeEqual(kp.initKey, leaf.hpkePublicKey)) {
    throw new ValidationError("KeyPackage init key equals its leaf key");
  }
  const caps = leaf.capabilities;
  if (
    !caps.versions.includes("mls10") || !caps.ciphersuites.includes(suite) ||
    !caps.credentials.includes("basic")
  ) {
    throw new ValidationError("KeyPackage capabilities do not cover its own suite");
  }
  if (leaf.extensions.length !== 0) throw new ValidationError("KeyPackage leaf has extensions");
  let lastResort = false;
  for (const ext of kp.extensions) {
    if (ext.extensionType !== LAST_RESORT_EXTENSION || lastResort) {
      throw new ValidationError("KeyPackage has an unexpected extension");
    }
    if (ext.extensionData.length !== 0) {
      throw new ValidationError("KeyPackage last_resort extension is not empty");
    }
    lastResort = true;
  }
  const { notBefore, notAfter } = leaf.lifetime;
  const now = BigInt(Math.floor(opts.now ?? Date.now() / 1000));
  if (notAfter < notBefore || notAfter - notBefore > BigInt(MAX_KEY_PACKAGE_LIFETIME_SECONDS)) {
    throw new ValidationError("KeyPackage lifetime is too long");
  }
  if (notBefore > now + BigInt(KEY_PACKAGE_CLOCK_SKEW_SECONDS)) {
    throw new ValidationError("KeyPackage is not yet valid");
  }
  if (notAfter < now) throw new ValidationError("KeyPackage has expired");
  const cs = await getCiphersuite(suite);
  let ok: boolean;
  try {
    ok = await verifyLeafNodeSignatureKeyPackage(leaf, cs.signature) &&
      await verifyKeyPackage(kp, cs.signature);
  } catch (e) {
    throw new ValidationError("KeyPackage signature does not verify", { cause: e });
  }
  if (!ok) throw new ValidationError("KeyPackage signature does not verify");
  const ref = await makeKeyPackageRef(kp, cs.hash);
  return {
    parsed: {
      username,
      signaturePublicKey: leaf.signaturePublicKey.slice(),
      suite,
      notBefore,
      notAfter,
      ref,
      lastResort,
    },
    keyPackage: kp,
  };
}
