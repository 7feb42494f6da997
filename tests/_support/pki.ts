/**
 * Test support: a small certificate authority, as an operator with a real certificate has
 * one (a company CA, or a public one): a CA certificate and a server certificate it signed
 * for localhost and 127.0.0.1.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { toPem } from "../../src/transport/cert.ts";

x509.cryptoProvider.set(crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A CA certificate and a server certificate/key it issued, PEM. */
export interface TestPki {
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

function serial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f;
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Make a CA and a server certificate for `localhost` and 127.0.0.1 signed by it. */
export async function makeTestPki(): Promise<TestPki> {
  const now = Date.now();
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=qpq test CA",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: "CN=localhost",
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return {
    caPem: ca.toString("pem"),
    serverCertPem: leaf.toString("pem"),
    serverKeyPem: toPem("PRIVATE KEY", pkcs8),
  };
}
