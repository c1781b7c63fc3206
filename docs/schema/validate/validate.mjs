// Validates the generated API documents (docs/schema/, written by shared/tests/specs.rs) with
// the official parsers: asyncapi.json with @asyncapi/parser (AsyncAPI 3, its schemas and its
// references), openapi.json with @readme/openapi-parser (OpenAPI 3.1 against the specification's
// own JSON Schema, then its references). Exits 1 on any error; scripts/test.sh runs it.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';
import { validate, compileErrors } from '@readme/openapi-parser';

const schemaDir = new URL('../', import.meta.url);
const read = async (name) => readFile(new URL(name, schemaDir), 'utf8');
let failed = false;

// Severity 0 is an error: the document is not valid AsyncAPI. Warnings and hints are the
// default ruleset's style advice; they are shown, not failed on.
const asyncapi = await read('asyncapi.json');
const { document, diagnostics } = await new Parser().parse(asyncapi);
for (const d of diagnostics) {
  console.log(`asyncapi.json: ${d.severity === 0 ? 'error' : 'note'} ${d.code} at /${d.path.join('/')}: ${d.message}`);
}
if (!document || diagnostics.some((d) => d.severity === 0)) {
  failed = true;
} else {
  console.log(
    `asyncapi.json: valid AsyncAPI ${document.version()}, ${document.messages().length} messages, ` +
      `${document.operations().length} operations`,
  );
}

const openapi = JSON.parse(await read('openapi.json'));
const result = await validate(openapi);
if (!result.valid) {
  console.log(`openapi.json: ${compileErrors(result)}`);
  failed = true;
} else {
  const operations = Object.values(openapi.paths).flatMap((item) => Object.keys(item));
  console.log(`openapi.json: valid OpenAPI ${openapi.openapi}, ${operations.length} operations`);
}

process.exit(failed ? 1 : 0);
