// Backend selection on this machine: cpu and wasm always load; the GPU and native ones only where installed and
// backed by hardware, so these tests accept either outcome for them but demand a clear reason when they fail.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { BACKENDS, selectBackend, tfBackendName } from '../../../client/backends.js';

test.serial('explicit cpu and wasm work and compute', async (t) => {
  for (const backend of ['cpu', 'wasm'] as const) {
    const choice = await selectBackend(backend);
    t.is(choice.backend, backend);
    t.deepEqual(choice.tried, []);
    t.is(typeof choice.device, 'string');
    t.is(tf.getBackend(), backend);
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([1, 0, 0, 1], [2, 2])).dataSync());
    t.deepEqual(Array.from(y), [1, 2, 3, 4]);
  }
  t.regex((await selectBackend('wasm')).device ?? '', /wasm/);
});

test.serial('an explicit backend that cannot load is an error naming it and why', async (t) => {
  for (const backend of ['webgpu', 'tfjs-node-gpu', 'tfjs-node'] as const) {
    try {
      const choice = await selectBackend(backend);
      t.is(choice.backend, backend, 'it loaded here: then it must be the active backend');
      t.is(tf.getBackend(), tfBackendName(backend));
    } catch (err) {
      t.true(err instanceof Error);
      const message = (err as Error).message;
      t.regex(message, new RegExp(`^backend ${backend} is not available: \\S`));
      t.false(message.includes('\n'), message);
    }
  }
  await t.throwsAsync(selectBackend('tpu' as 'cpu'), { message: /^unknown backend "tpu"/ });
});

test.serial('auto tries webgpu → tfjs-node-gpu → tfjs-node → wasm → cpu and reports what failed', async (t) => {
  const choice = await selectBackend('auto');
  const at = BACKENDS.indexOf(choice.backend);
  t.true(at >= 0);
  t.deepEqual(choice.tried.map((a) => a.backend), BACKENDS.slice(0, at), 'every faster backend was tried first, in order');
  for (const a of choice.tried) t.regex(a.error, /\S/, `${a.backend} has a reason`);
  t.true(at <= BACKENDS.indexOf('wasm'), 'wasm always loads, so auto never falls to cpu');
  t.is(tf.getBackend(), tfBackendName(choice.backend));
  t.log(`auto chose ${choice.backend} (${choice.device ?? 'no device info'}); tried: ${JSON.stringify(choice.tried)}`);
});
