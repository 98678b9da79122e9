import test from 'ava';
import { Auth, bearerToken, tokenList } from '../../server/auth.js';

test('tokens admit their own role only, with a reason naming the problem', (t) => {
  const auth = new Auth({ worker: ['w1', 'w2'], submitter: ['c1'] });
  t.deepEqual(auth.check('worker', 'w2'), { ok: true });
  t.deepEqual(auth.check('submitter', 'c1'), { ok: true });
  t.deepEqual(auth.check('worker', 'c1'), { ok: false, status: 401, reason: 'unauthorized: this is a client token; workers need a worker token' });
  t.deepEqual(auth.check('submitter', 'w1'), { ok: false, status: 403, reason: 'forbidden: this is a worker token; the HTTP API needs a client token' });
  t.deepEqual(auth.check('worker', 'nope'), { ok: false, status: 401, reason: 'unauthorized: unknown worker token' });
  t.deepEqual(auth.check('submitter', 'nope'), { ok: false, status: 401, reason: 'unauthorized: unknown client token' });
  t.like(auth.check('worker', undefined), { ok: false, status: 401, reason: 'unauthorized: this coordinator needs a worker token' });
  t.like(auth.check('submitter', ''), { ok: false, status: 401 });
  t.like(auth.check('worker', 42), { ok: false, status: 401 });
  t.like(auth.check('worker', 'w1 '), { ok: false }, 'no trimming or prefix matching');
  t.like(auth.check('worker', 'w'), { ok: false });
});

test('a role without tokens is open', (t) => {
  const auth = new Auth({ worker: [], submitter: ['c'] });
  t.true(auth.isOpen('worker'));
  t.false(auth.isOpen('submitter'));
  t.deepEqual(auth.check('worker', undefined), { ok: true });
  t.deepEqual(auth.check('worker', 'anything'), { ok: true });
  t.like(auth.check('submitter', undefined), { ok: false });
});

test('one token may serve both roles', (t) => {
  const auth = new Auth({ worker: ['x'], submitter: ['x'] });
  t.deepEqual(auth.check('worker', 'x'), { ok: true });
  t.deepEqual(auth.check('submitter', 'x'), { ok: true });
});

test('token lists from commander (list or env string) and bearer headers', (t) => {
  t.deepEqual(tokenList(['a', 'b']), ['a', 'b']);
  t.deepEqual(tokenList('a'), ['a']);
  t.deepEqual(tokenList(''), [], 'an empty env var means no token');
  t.deepEqual(tokenList(undefined), []);
  t.deepEqual(tokenList(['a', '', 3]), ['a']);
  t.is(bearerToken('Bearer abc'), 'abc');
  t.is(bearerToken('bearer   abc '), 'abc');
  t.is(bearerToken('Basic abc'), undefined);
  t.is(bearerToken('Bearer a b'), undefined);
  t.is(bearerToken(undefined), undefined);
});
