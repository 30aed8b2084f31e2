// A self-signed certificate for RTMPS tests, made with openssl (an argument list, no shell).
import { execFileSync } from "node:child_process";
import { join } from "node:path";

/** Writes key.pem and cert.pem (CN=localhost, a P-256 key, one day) into `dir`; returns their paths. */
export function selfSignedCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert,
  ], { stdio: "ignore" });
  return { cert, key };
}
