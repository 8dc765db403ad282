// Validates an AsyncAPI document with the reference parser (@asyncapi/parser, pinned in
// package-lock.json and installed into .local/node by infra/bootstrap.sh). Exits 1 when the
// parser reports an error-severity diagnostic or returns no document; prints every diagnostic.
// Usage: node infra/asyncapi/validate.cjs schemas/asyncapi.json
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const modules = path.resolve(process.env.DATAFLOWS_NODE_MODULES || path.join(root, ".local", "node", "node_modules"));
const { Parser, DiagnosticSeverity } = require(path.join(modules, "@asyncapi", "parser"));

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: validate.cjs <asyncapi document>");
    process.exit(2);
  }
  const text = fs.readFileSync(file, "utf8");
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text, { source: path.resolve(file) });
  const severities = ["error", "warning", "information", "hint"];
  for (const d of diagnostics) {
    console.log(`${severities[d.severity] || d.severity} ${d.code} at ${(d.path || []).join(".")}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  if (!document || errors.length > 0) {
    console.error(`${file}: INVALID (${errors.length} error(s))`);
    process.exit(1);
  }
  const messages = document.allMessages().length;
  const channels = document.channels().length;
  console.log(
    `${file}: valid AsyncAPI ${document.version()}, ${channels} channel(s), ${messages} message(s), ` +
      `${diagnostics.length - errors.length} warning(s) or hint(s)`
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
