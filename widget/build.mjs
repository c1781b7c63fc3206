// Builds widget/dist/ (committed: the local server embeds it, so `cargo run` needs no Node).
//   node build.mjs          build and write dist/
//   node build.mjs --check  build in memory; fail when dist/ differs (stale) or a budget is over
import { build, transform } from 'esbuild';
import { minify } from 'terser';
import { gzipSync } from 'node:zlib';
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const check = process.argv.includes('--check');
// Gzipped-size budgets (bytes).
const BUDGET = { 'widget.js': 20 * 1024 };

const common = { bundle: true, minify: true, write: false, target: ['es2021'], legalComments: 'none', charset: 'utf8', logLevel: 'warning' };

async function js(entry, format, globalName) {
  const r = await build({ ...common, entryPoints: [join(root, entry)], format, ...(globalName ? { globalName } : {}) });
  return r.outputFiles[0].contents;
}

/**
 * A shipped bundle: esbuild's, minified again by terser, whose compression and frequency-ordered
 * names gzip about 2.5 % smaller (the widget's budget). Same semantics: no unsafe transforms.
 */
async function shipped(entry, format) {
  const code = Buffer.from(await js(entry, format)).toString('utf8');
  const r = await minify(code, { ecma: 2021, module: format === 'esm', compress: { toplevel: true }, mangle: { toplevel: true } });
  return Buffer.from(r.code);
}

const outputs = {
  'widget.js': await shipped('src/widget/widget.js', 'iife'),
  'console.js': await shipped('src/console/console.js', 'iife'),
  'sdk.js': await shipped('src/sdk/index.ts', 'esm'),
};
// The stylesheet module imports the chat view, which imports the (TypeScript) SDK: bundled first, then evaluated.
const cssModule = await js('src/console/console.css.js', 'esm');
const consoleCss = (await import(`data:text/javascript;base64,${Buffer.from(cssModule).toString('base64')}`)).default;
const css = (await transform(consoleCss, { loader: 'css', minify: true })).code.trim();
outputs['console.html'] = Buffer.from(
  readFileSync(join(root, 'src/pages/console.html'), 'utf8').replace('<link rel="stylesheet" href="/console.css">', `<style>${css}</style>`),
);
outputs['demo.html'] = readFileSync(join(root, 'src/pages/demo.html'));

let failed = false;
const stale = [];
for (const [name, bytes] of Object.entries(outputs)) {
  const gz = gzipSync(bytes, { level: 9 }).length;
  const over = BUDGET[name] && gz > BUDGET[name];
  console.log(`${name.padEnd(13)} ${String(bytes.length).padStart(7)} B  ${String(gz).padStart(6)} B gzipped (${(gz / 1024).toFixed(1)} KB)${over ? `  OVER BUDGET ${BUDGET[name]}` : ''}`);
  if (over) failed = true;
  const path = join(dist, name);
  if (check) {
    if (!existsSync(path) || !Buffer.from(bytes).equals(readFileSync(path))) stale.push(name);
  } else {
    mkdirSync(dist, { recursive: true });
    writeFileSync(path, bytes);
  }
}
if (check) {
  const extra = existsSync(dist) ? readdirSync(dist).filter((f) => !(f in outputs)) : [];
  stale.push(...extra.map((f) => `${f} (not a build output)`));
  if (stale.length) {
    console.error(`widget/dist is stale relative to widget/src: ${stale.join(', ')}\nrun: (cd widget && npm run build), then commit widget/dist`);
    failed = true;
  } else console.log('widget/dist is up to date');
}
process.exit(failed ? 1 : 0);
