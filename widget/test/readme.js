// The README's React snippet, as the tests build and type-check it.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const readme = join(dirname(fileURLToPath(import.meta.url)), '../README.md');

/** The README's first `tsx` code block. */
export function reactSnippet() {
  const m = readFileSync(readme, 'utf8').match(/```tsx\n([\s\S]*?)```/);
  if (!m) throw new Error('README.md has no tsx code block');
  return m[1];
}
