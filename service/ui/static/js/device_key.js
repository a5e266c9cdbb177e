// A device's key pair and certificate signing request, made in this browser with WebCrypto and
// the vendored @peculiar/x509 (a global `x509`). The private key is exported only into the bundle
// the operator downloads; it is never sent anywhere.

const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" };

export async function makeDeviceKey(commonName) {
  const { x509 } = globalThis;
  if (!x509 || !crypto.subtle) {
    throw new Error("This browser cannot make keys here (WebCrypto needs https or localhost).");
  }
  x509.cryptoProvider.set(crypto);
  const keys = await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]);
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    // The JSON form of a name: no escaping rules for commas or plus signs in a serial number.
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { csrPem: request.toString("pem"), privateKeyPem: pem("PRIVATE KEY", pkcs8) };
}

function pem(label, der) {
  const bytes = new Uint8Array(der);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g);
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
