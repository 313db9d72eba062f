// The JavaScript v3 default credential chain after one cut transfer: does the process recover?
//
// Usage: node default-chain-hang.js http://127.0.0.1:PORT   (an imds_exporter simulator)
// Switches the simulator to truncated?mode=transfer, asks one defaultProvider() (the chain every
// client uses) for credentials, switches the simulator back to healthy after 1 s and asks the
// same provider again, then a new provider after 2 s; reports after 8 s. Observed with
// @aws-sdk/credential-provider-node 3.972.99: the first two calls never settle (memoizeChain keeps
// the pending call as its activeLock and every later call awaits it); only a new provider gets
// credentials. Prints no secrets: only the first four characters of the access key id.
"use strict";
const endpoint = process.argv[2] || "";
const url = new URL(endpoint);
if (url.protocol !== "http:" || !url.hostname.startsWith("127.")) {
  console.error(`refusing non-loopback endpoint ${endpoint}`);
  process.exit(2);
}
process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = endpoint;
for (const v of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"]) {
  delete process.env[v];
}
process.env.AWS_CONFIG_FILE = "/nonexistent/aws-config";
process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/aws-credentials";
const { defaultProvider } = require("@aws-sdk/credential-provider-node");

const t0 = Date.now();
const log = (...a) => console.log(((Date.now() - t0) / 1000).toFixed(2) + "s", ...a);
const settled = {};
const ask = (name, provider) => provider().then(
  (c) => { settled[name] = true; log(`${name}: credentials ${String(c.accessKeyId).slice(0, 4)}...`); },
  (e) => { settled[name] = true; log(`${name}: error ${e.name}`); });
const sim = (scenario) => fetch(`${endpoint}/_sim/scenario/${scenario}`, { method: "POST" });

setInterval(() => {}, 1000); // an application's server keeps the event loop alive
(async () => {
  await sim("truncated?mode=transfer");
  log("IMDS cuts the credentials transfer");
  const provider = defaultProvider();
  ask("call 1 (same provider)", provider);
  setTimeout(async () => {
    await sim("healthy");
    log("IMDS healthy again");
    ask("call 2 (same provider)", provider);
  }, 1000);
  setTimeout(() => ask("call 3 (new provider)", defaultProvider()), 2000);
  setTimeout(() => {
    for (const name of ["call 1 (same provider)", "call 2 (same provider)", "call 3 (new provider)"]) {
      if (!settled[name]) log(`${name}: still pending`);
    }
    process.exit(0);
  }, 8000);
})();
