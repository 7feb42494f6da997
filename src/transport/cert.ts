/**
 * TLS certificates for the QUIC server: a self-signed ECDSA P-256 certificate generated
 * without openssl (CA:FALSE, serverAuth, SAN localhost + 127.0.0.1 + ::1 — rustls refuses
 * CA certificates as end-entity certificates), PEM/DER conversion and SHA-256 fingerprints.
 * The only importer of @peculiar/x509.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { fromBase64, toBase64 } from "../bytes.ts";
import { UsageError } from "../errors.ts";

x509.cryptoProvider.set(crypto);

/** A certificate and its private key, both PEM. */
export interface CertificatePair {
  /** Certificate chain, PEM. */
  certPem: string;
  /** PKCS#8 private key, PEM. */
  keyPem: string;
}

/** Options for {@link generateSelfSignedCertificate}. */
export interface SelfSignedOptions {
  /** Extra DNS names for the subjectAltName (localhost is always included). */
  dnsNames?: string[];
  /** Extra IP addresses for the subjectAltName (127.0.0.1 and ::1 always included). */
  ipAddresses?: string[];
  /** Validity in days (default 825). */
  days?: number;
}

/** Generate a self-signed ECDSA P-256 server certificate. */
export async function generateSelfSignedCertificate(
  options: SelfSignedOptions = {},
): Promise<CertificatePair> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const dns = ["localhost", ...(options.dnsNames ?? [])];
  const ips = ["127.0.0.1", "::1", ...(options.ipAddresses ?? [])];
  const now = new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: toHexSerial(crypto.getRandomValues(new Uint8Array(16))),
    name: "CN=qpq server",
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (options.days ?? 825) * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        ...dns.map((value) => ({ type: "dns" as const, value })),
        ...ips.map((value) => ({ type: "ip" as const, value })),
      ]),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const pair = { certPem: cert.toString("pem"), keyPem: toPem("PRIVATE KEY", pkcs8) };
  pkcs8.fill(0);
  return pair;
}

function toHexSerial(b: Uint8Array): string {
  b[0] = b[0]! & 0x7f; // positive serial
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Wrap DER bytes as PEM with the given label. */
export function toPem(label: string, der: Uint8Array): string {
  const b64 = toBase64(der).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;

/** True when the bytes look like PEM text. */
export function isPem(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
  return head.includes("-----BEGIN ");
}

/** First PEM block's DER bytes; throws {@link UsageError} when there is none. */
export function pemToDer(pem: string, what: string): Uint8Array<ArrayBuffer> {
  const m = PEM_RE.exec(pem);
  if (!m) throw new UsageError(`Cannot read ${what}: not a PEM file`);
  try {
    return fromBase64(m[2]!.replace(/\s+/g, ""));
  } catch {
    throw new UsageError(`Cannot read ${what}: damaged PEM data`);
  }
}

/**
 * Normalise a certificate file's bytes (PEM or DER) to PEM, validating that it parses as
 * an X.509 certificate.
 */
export function certificateToPem(bytes: Uint8Array, what = "certificate"): string {
  const pem = isPem(bytes) ? new TextDecoder().decode(bytes) : toPem("CERTIFICATE", bytes);
  try {
    new x509.X509Certificate(pemToDer(pem, what));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`Cannot read ${what}: not an X.509 certificate`);
  }
  return pem;
}

/**
 * Normalise a private key file's bytes to PEM. DER input is taken as PKCS#8 (what
 * `openssl pkcs8 -topk8 -outform der` and qpq itself write).
 */
export function privateKeyToPem(bytes: Uint8Array): string {
  if (isPem(bytes)) return new TextDecoder().decode(bytes);
  if (bytes.length < 16 || bytes[0] !== 0x30) {
    throw new UsageError("Cannot read TLS key: neither PEM nor DER");
  }
  return toPem("PRIVATE KEY", bytes);
}

/** SHA-256 fingerprint of a certificate's DER bytes, as colon-separated upper-case hex. */
export async function certificateFingerprint(certPem: string): Promise<string> {
  const der = pemToDer(certPem, "certificate");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return [...digest].map((x) => x.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/** Facts about a certificate shown to operators. */
export interface CertificateInfo {
  /** Subject distinguished name. */
  subject: string;
  /** Expiry. */
  notAfter: Date;
  /** True for a self-signed certificate (issuer = subject). */
  selfSigned: boolean;
}

/** Read subject, expiry and self-signedness of a PEM certificate. */
export function certificateInfo(certPem: string): CertificateInfo {
  const cert = new x509.X509Certificate(pemToDer(certPem, "certificate"));
  return {
    subject: cert.subject,
    notAfter: cert.notAfter,
    selfSigned: cert.subject === cert.issuer,
  };
}
