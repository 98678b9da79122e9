// README's library example must run as printed, importing the package by name.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { cleanEnv, root, run } from '../helpers/processes.js';

test('README library example runs and prints what its comments say', async (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const library = readme.slice(readme.indexOf('## Library'));
  const code = /```js\n([\s\S]*?)```/.exec(library)?.[1];
  if (code === undefined) return t.fail('README has no js example in its Library section');
  // On stdin with the package folder as the working folder, so `import … from 'fedpool'` resolves to this package
  // (self-reference via exports) and nothing is written into the checkout.
  const r = await run(process.execPath, ['--input-type=module'], { input: code, cwd: root, env: cleanEnv() });
  t.is(r.status, 0, r.stderr);
  const line = (label: string) => r.stdout.split('\n').find((l) => l.startsWith(label)) ?? '';
  const nums = (label: string) => (line(label).match(/-?\d+(\.\d+)?(e-?\d+)?/g) ?? []).map(Number);
  t.deepEqual(nums('mean').map((v) => +v.toFixed(2)), [-9.2, 16.84]);
  t.deepEqual(nums('trimmedMean').map((v) => +v.toFixed(2)), [0.97, 1.1]);
  t.true([[0.9, 1.1], [1, 1], [1.1, 0.9], [1, 1.2]].some((h) => nums('krum').map((v) => +v.toFixed(2)).join() === h.join()));
  t.deepEqual(nums('FedAU ω'), [3, 1, 1]);
  t.regex(line('FedBuff'), /^FedBuff\s+ready .* s\(3\) = 0\.5$/);
});
