// The real-data tasks: MNIST and SpamAssassin split Dirichlet(α) over clients, trained by the sync engine.
import test from 'ava';
import { runSync } from '../../simulations/engine/sync.js';
import { createDataSoftmaxTask } from '../../simulations/tasks/softmax.js';
import { createMnistTask, createSpamTask } from '../../simulations/tasks/real-data.js';

const fedavg = { weighting: 'samples', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } } as const;

test('MNIST softmax regression over 20 Dirichlet(0.3) clients: accuracy far above chance', (t) => {
  const task = createMnistTask({ numClients: 20, alpha: 0.3, seed: 1, perClassTrain: 150, perClassTest: 50 });
  t.is(task.numClients, 20);
  t.is(task.dim, 196 * 10 + 10);
  t.is(task.offsets.at(-1), 1500);
  // Dirichlet(0.3) skews labels: some client holds at most a few classes.
  const classesOf = (n: number) => new Set(task.trainY.subarray(task.offsets[n], task.offsets[n + 1])).size;
  t.true(Array.from({ length: 20 }, (_, n) => classesOf(n)).some((k) => k <= 5));
  const r = runSync({ experiment: 'mnist', algorithm: 'fedavg', seed: 1, task, rounds: 40, participation: null, clientsPerRound: 10, local: { steps: 10, lr: 0.5, batchSize: 32, momentum: 0 }, pipeline: fedavg, logEvery: 20 });
  t.log(r.rows.map((x) => `${x.step}: ${x.accuracy?.toFixed(3)}`).join(', '));
  t.is(r.rows[0]!.accuracy, 0.1); // x₀ = 0 predicts class 0 for every (balanced) test row
  t.true(r.finalAccuracy! >= 0.75, `final accuracy ${r.finalAccuracy}`);
});

test('SpamAssassin through the hashing featurizer: spam filtering far above the majority class', (t) => {
  const task = createSpamTask({ numClients: 10, alpha: 0.5, seed: 2, dim: 128 });
  const majority = Math.max(...[0, 1].map((c) => task.testY.filter((y) => y === c).length)) / task.testY.length;
  const r = runSync({ experiment: 'spam', algorithm: 'fedavg', seed: 1, task, rounds: 40, participation: null, clientsPerRound: 5, local: { steps: 10, lr: 0.5, batchSize: 32, momentum: 0 }, pipeline: fedavg, logEvery: 20 });
  t.log(`majority class ${majority.toFixed(3)}; accuracy ${r.rows.map((x) => x.accuracy?.toFixed(3)).join(' → ')}`);
  t.true(r.finalAccuracy! >= majority + 0.1, `final accuracy ${r.finalAccuracy} vs majority ${majority}`);
});

test('createDataSoftmaxTask lays each client out contiguously and refuses bad partitions', (t) => {
  const train = { features: Float32Array.from([0, 0, 1, 1, 2, 2, 3, 3]), labels: Int32Array.from([0, 1, 0, 1]) };
  const test_ = { features: Float32Array.from([1, 1]), labels: Int32Array.from([1]) };
  const task = createDataSoftmaxTask({ name: 'toy', classes: 2, features: 2, train, test: test_, parts: [[3, 0], [1, 2]] });
  t.deepEqual(Array.from(task.offsets), [0, 2, 4]);
  t.deepEqual(Array.from(task.trainY), [1, 0, 1, 0]);
  t.deepEqual(Array.from(task.trainX), [3, 3, 0, 0, 1, 1, 2, 2]);
  t.throws(() => createDataSoftmaxTask({ name: 'toy', classes: 2, features: 2, train, test: test_, parts: [[0], []] }), { message: /client 1 has no rows/ });
  t.throws(() => createDataSoftmaxTask({ name: 'toy', classes: 2, features: 2, train, test: test_, parts: [[7]] }), { message: /row 7/ });
});
