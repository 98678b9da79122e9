import test from 'ava';
import { Auth, bearerToken, canSee, tokenList } from '../../server/auth.js';

test('tokens admit their own role only, with a reason naming the problem', (t) => {
  const auth = new Auth({ worker: ['w1', 'w2'], submitter: ['c1'] });
  t.like(auth.check('worker', 'w2'), { ok: true });
  t.like(auth.check('submitter', 'c1'), { ok: true, principal: { admin: false } });
  // A token of the other role is refused as an unknown one: the refusal never confirms it is valid elsewhere.
  t.deepEqual(auth.check('worker', 'c1'), { ok: false, status: 401, reason: 'unauthorized: unknown worker token' });
  t.deepEqual(auth.check('submitter', 'w1'), { ok: false, status: 401, reason: 'unauthorized: unknown client token' });
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
  t.deepEqual(auth.check('worker', undefined), { ok: true, principal: { owner: null, admin: false } });
  t.deepEqual(auth.check('worker', 'anything'), { ok: true, principal: { owner: null, admin: false } });
  t.like(auth.check('submitter', undefined), { ok: false });
});

test('one token may serve both roles', (t) => {
  const auth = new Auth({ worker: ['x'], submitter: ['x'] });
  t.like(auth.check('worker', 'x'), { ok: true });
  t.like(auth.check('submitter', 'x'), { ok: true });
});

test('each client token is its own owner; admin tokens are submitters that see everything; admin tokens close the submitter role', (t) => {
  const auth = new Auth({ worker: ['w'], submitter: ['c1', 'c2'], admin: ['a'] });
  const p1 = auth.check('submitter', 'c1');
  const p2 = auth.check('submitter', 'c2');
  const pa = auth.check('submitter', 'a');
  if (!p1.ok || !p2.ok || !pa.ok) return t.fail('all three are submitters');
  t.regex(p1.principal.owner ?? '', /^[0-9a-f]{64}$/);
  t.not(p1.principal.owner, p2.principal.owner);
  t.deepEqual(auth.check('submitter', 'c1'), p1, 'the same token, the same owner');
  t.true(pa.principal.admin);
  t.false(p1.principal.admin);
  t.like(auth.check('worker', 'a'), { ok: false, status: 401 }, 'an admin token is not a worker token');
  t.true(canSee(p1.principal, p1.principal.owner));
  t.false(canSee(p1.principal, p2.principal.owner));
  t.true(canSee(pa.principal, p2.principal.owner));
  t.true(canSee(p2.principal, null), 'a job from before tenancy (no owner) stays visible');
  const adminsOnly = new Auth({ worker: [], submitter: [], admin: ['a'] });
  t.false(adminsOnly.isOpen('submitter'));
  t.like(adminsOnly.check('submitter', undefined), { ok: false, status: 401 });
  const open = new Auth({ worker: [], submitter: [] });
  const anyone = open.check('submitter', undefined);
  t.true(anyone.ok && anyone.principal.owner === null && canSee(anyone.principal, p1.principal.owner), 'an open submitter role is one tenant');
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
