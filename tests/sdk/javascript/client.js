// One fresh AWS SDK for JavaScript v3 IMDS credential provider, asked for credentials once.
//
// Usage: node client.js [ENDPOINT]   (or IMDS_ENDPOINT), e.g. http://127.0.0.1:1338
// IMDS_JS_PROVIDER=smithy uses @smithy/credential-provider-imds's fromInstanceMetadata directly;
// the default is @aws-sdk/credential-providers' fromInstanceMetadata (what applications import,
// a wrapper that builds a fresh smithy provider on every call).
//
// Prints one JSON line: {"sdk": "javascript", "available", "wait_seconds", "error", "detail",
// "access_key_id_prefix", "hung"}. The secret key and the session token never leave this
// process: only the first four characters of the access key id are printed.
//
// The provider has no endpoint option: it reads AWS_EC2_METADATA_SERVICE_ENDPOINT (or the
// config file), as an application's would, so that is how the endpoint is given. Everything
// else is the default (timeout 1000 ms, maxRetries 0).
//
// A provider that never settles is reported as "hung": true in two ways:
// - the event loop drains with the promise still pending (nothing left that could settle it:
//   in a real application, with a server keeping the loop alive, it would wait forever);
//   reported at once, with "hang": "event-loop-drained";
// - or the hard deadline (IMDS_CLIENT_DEADLINE seconds, default 30) passes: "hang": "deadline"
//   (with IMDS_JS_KEEP_ALIVE=1, which holds the event loop open as an application's server does).
"use strict";

let started = process.hrtime.bigint();
const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;

function refuseNonLoopback(endpoint) {
  let url;
  try {
    url = new URL(endpoint);
  } catch {
    url = null;
  }
  const host = url ? url.hostname : "";
  if (!url || url.protocol !== "http:" || !(host.startsWith("127.") || host === "[::1]" || host === "localhost")) {
    process.stderr.write(`javascript client: refusing non-loopback IMDS endpoint ${JSON.stringify(endpoint)}\n`);
    process.exit(2);
  }
}

const endpoint = process.argv[2] || process.env.IMDS_ENDPOINT || "";
refuseNonLoopback(endpoint);
process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = endpoint;
for (const v of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]) {
  delete process.env[v];
}
const deadline = Number(process.env.IMDS_CLIENT_DEADLINE || "30");
const which = process.env.IMDS_JS_PROVIDER === "smithy" ? "smithy" : "aws-sdk";

let printed = false;
function report(fields) {
  if (printed) return;
  printed = true;
  const line = {
    sdk: "javascript",
    provider: which === "smithy" ? "@smithy/credential-provider-imds" : "@aws-sdk/credential-providers",
    available: false,
    wait_seconds: Number(seconds().toFixed(4)),
    error: null,
    access_key_id_prefix: null,
    hung: false,
    ...fields,
  };
  process.stdout.write(JSON.stringify(line) + "\n");
}

// A quiet logger: the provider's warnings (static stability) go to stderr, never credentials.
const logger = {
  debug: () => {},
  info: () => {},
  warn: (...args) => process.stderr.write(`javascript client: warn: ${String(args[0]).slice(0, 200)}\n`),
  error: () => {},
};

process.on("beforeExit", () => {
  if (!printed) {
    report({ hung: true, hang: "event-loop-drained", error: "never-settled",
      detail: "the provider's promise neither resolved nor rejected and nothing is left to settle it" });
  }
});
// IMDS_JS_KEEP_ALIVE=1: hold the event loop open as an application's server would; a provider
// that never settles then shows as the deadline passing, as an application would live it.
if (process.env.IMDS_JS_KEEP_ALIVE === "1") setInterval(() => {}, 1000);
const timer = setTimeout(() => {
  report({ hung: true, hang: "deadline", error: "deadline" });
  process.exit(0);
}, deadline * 1000);
timer.unref();

(async () => {
  // Load the modules first (the wrapper imports them again on each call, from the cache), so that
  // wait_seconds counts the provider's own work, from its creation on.
  const smithy = require("@smithy/credential-provider-imds");
  const awsSdk = require("@aws-sdk/credential-providers");
  require("@aws-sdk/core/client");
  started = process.hrtime.bigint();
  const provider = which === "smithy" ? smithy.fromInstanceMetadata({ logger }) : awsSdk.fromInstanceMetadata({ logger });
  try {
    const creds = await provider();
    const expiry = creds.expiration instanceof Date ? (creds.expiration.getTime() - Date.now()) / 1000 : null;
    report({ available: true, access_key_id_prefix: String(creds.accessKeyId).slice(0, 4), expiry_in_seconds: expiry });
  } catch (err) {
    const name = (err && (err.name || (err.constructor && err.constructor.name))) || "Error";
    const detail = [err && err.message, err && err.statusCode && `status ${err.statusCode}`, err && err.code]
      .filter(Boolean).join("; ").slice(0, 300);
    report({ error: name, detail });
  }
})();
