/**
 * Folder-private helpers that turn raw key bytes into `node:crypto` key objects.
 *
 * `node:crypto` only imports Curve25519 keys as DER (PKCS#8 / SPKI) or JWK, so raw keys are
 * wrapped in the fixed RFC 8410 DER prefixes below. The prefixes never change length because
 * the algorithm identifiers and key sizes are fixed.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";

/** PKCS#8 prefix for a 32-byte Ed25519 private key seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
/** SPKI prefix for a 32-byte Ed25519 public key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
/** PKCS#8 prefix for a 32-byte X25519 private key (RFC 8410). */
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
/** SPKI prefix for a 32-byte X25519 public key (RFC 8410). */
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

function wrap(prefix: Buffer, raw: Uint8Array): Buffer {
  const der = Buffer.alloc(prefix.length + raw.length);
  prefix.copy(der, 0);
  der.set(raw, prefix.length);
  return der;
}

function importPrivate(prefix: Buffer, raw: Uint8Array): KeyObject {
  const der = wrap(prefix, raw);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

function importPublic(prefix: Buffer, raw: Uint8Array): KeyObject {
  return createPublicKey({ key: wrap(prefix, raw), format: "der", type: "spki" });
}

/** Raw 32-byte public key of an RFC 8410 key object (private keys give their public half). */
export function exportRawPublic(key: KeyObject): Uint8Array {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const der = pub.export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - 32));
}

/** Import a 32-byte Ed25519 seed as a private key object. */
export function ed25519PrivateKey(seed: Uint8Array): KeyObject {
  return importPrivate(ED25519_PKCS8_PREFIX, seed);
}

/** Import a 32-byte Ed25519 public key; throws on an invalid encoding. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return importPublic(ED25519_SPKI_PREFIX, raw);
}

/** Import a 32-byte X25519 private key (clamped by the library when used). */
export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  return importPrivate(X25519_PKCS8_PREFIX, raw);
}

/** Import a 32-byte X25519 public key (u-coordinate). */
export function x25519PublicKey(raw: Uint8Array): KeyObject {
  return importPublic(X25519_SPKI_PREFIX, raw);
}
