// README's library example must run as printed, importing the package by name.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('README library example runs and prints what its comments say', (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const library = readme.slice(readme.indexOf('## Library'));
  const code = /```js\n([\s\S]*?)```/.exec(library)?.[1];
  if (code === undefined) return t.fail('README has no js example in its Library section');
  // Inside the package folder, so `import … from 'fedpool'` resolves to this package (self-reference via exports).
  const file = `${root}.readme-example.mjs`;
  writeFileSync(file, code);
  try {
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', cwd: root });
    t.is(r.status, 0, r.stderr);
    const line = (label: string) => r.stdout.split('\n').find((l) => l.startsWith(label)) ?? '';
    const nums = (label: string) => (line(label).match(/-?\d+(\.\d+)?(e-?\d+)?/g) ?? []).map(Number);
    t.deepEqual(nums('mean').map((v) => +v.toFixed(2)), [-9.2, 16.84]);
    t.deepEqual(nums('trimmedMean').map((v) => +v.toFixed(2)), [0.97, 1.1]);
    t.true([[0.9, 1.1], [1, 1], [1.1, 0.9], [1, 1.2]].some((h) => nums('krum').map((v) => +v.toFixed(2)).join() === h.join()));
    t.deepEqual(nums('FedAU ω'), [3, 1, 1]);
    t.regex(line('FedBuff'), /^FedBuff\s+ready .* s\(3\) = 0\.5$/);
  } finally {
    rmSync(file, { force: true });
  }
});
