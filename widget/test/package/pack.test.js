// The npm package as a user gets it: `npm pack`, the tarball installed into an empty project,
// imported by Node through its `exports` map, and the README's React snippet type-checked
// against its declarations with tsc (strict). Prints the packed and unpacked sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reactSnippet } from '../readme.js';

const widget = join(dirname(fileURLToPath(import.meta.url)), '../..');
const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8' });

test('npm pack: ESM, declarations and an exports map; installs, imports and type-checks', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'roomcast-package-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], widget));
  const files = packed.files.map((f) => f.path).sort();
  console.log(`npm pack: ${packed.filename}: ${packed.size} B packed, ${packed.unpackedSize} B unpacked, ${files.length} files`);
  for (const f of ['package.json', 'README.md', 'lib/sdk/index.js', 'lib/sdk/index.d.ts', 'lib/sdk/generated/frames.d.ts', 'lib/react/index.js', 'lib/react/index.d.ts']) {
    assert.ok(files.includes(f), `${f} is in the package`);
  }
  assert.deepEqual(files.filter((f) => !/^lib\/(sdk|react)\/.*\.(js|d\.ts)$/.test(f) && f !== 'package.json' && f !== 'README.md'), [], 'nothing but lib/, package.json and README.md');

  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  npm(['install', '--offline', join(dir, packed.filename)], app);
  // React, its types and TypeScript: the exact versions this directory's lockfile pins, linked
  // rather than fetched again.
  for (const dep of ['react', 'react-dom', '@types/react', '@types/react-dom', 'typescript']) {
    mkdirSync(dirname(join(app, 'node_modules', dep)), { recursive: true });
    symlinkSync(join(widget, 'node_modules', dep), join(app, 'node_modules', dep), 'dir');
  }

  // Node resolves both entry points through the exports map (and nothing else).
  const exported = JSON.parse(
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const sdk = await import('roomcast'); const react = await import('roomcast/react');
         let deep = 'importable'; try { await import('roomcast/lib/sdk/client.js'); } catch (e) { deep = e.code; }
         console.log(JSON.stringify({ sdk: Object.keys(sdk).sort(), react: Object.keys(react).sort(), deep }));`,
      ],
      { cwd: app, encoding: 'utf8' },
    ),
  );
  for (const name of ['RoomcastClient', 'Room', 'Timeline', 'decodeClaims', 'ulid', 'setAvailability', 'transfer']) assert.ok(exported.sdk.includes(name), `roomcast exports ${name}`);
  for (const name of ['RoomcastProvider', 'useRoomcast', 'useMessages', 'useSend', 'useTyping', 'usePresence', 'useReadState', 'useConnection', 'useDesk']) {
    assert.ok(exported.react.includes(name), `roomcast/react exports ${name}`);
  }
  assert.equal(exported.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED');

  // The README's snippet, and a use of the frame types, type-check against the declarations.
  writeFileSync(join(app, 'app.tsx'), reactSnippet());
  writeFileSync(
    join(app, 'frames.ts'),
    `import type { ClientAction, ServerFrame, ViewItem } from 'roomcast';
export const join: ClientAction = { action: 'join', room: 'lobby', since: 0 };
export function seqOf(f: ServerFrame): number | undefined { return f.type === 'ack' ? f.seq : undefined; }
export const body = (v: ViewItem): string => v.body ?? '';
// @ts-expect-error: a message needs its id
export const bad: ClientAction = { action: 'message', room: 'lobby', body: 'x' };
`,
  );
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', jsx: 'react-jsx', lib: ['es2022', 'dom'], types: [] },
      files: ['app.tsx', 'frames.ts'],
    }),
  );
  execFileSync(process.execPath, [join(app, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app, encoding: 'utf8' });
});
