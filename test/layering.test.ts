// The layering rules of the README's architecture section, checked over the real import graph (parsed with the
// TypeScript compiler, so multi-line, re-export and dynamic imports all count): shared/ is platform-free and
// self-contained, server/ and client/ meet only in shared/, simulations/ runs on shared/ alone, and no module takes
// part in an import cycle at run time (type-only imports vanish when compiled, so they may form cycles).
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { root } from './helpers/processes.js';

const FOLDERS = ['shared', 'server', 'client', 'simulations', 'cli', 'bench'] as const;

interface Import {
  /** The module specifier as written. */
  spec: string;
  /** Repository-relative .ts path for a relative import; undefined for packages and node: modules. */
  target: string | undefined;
  /** Erased at compile time (`import type`, or every named binding is `type`). */
  typeOnly: boolean;
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const p = path.join(dir, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(path.relative(root, p));
    }
  };
  for (const folder of FOLDERS) walk(path.join(root, folder));
  return out;
}

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(root, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean): void => {
    const target = spec.startsWith('.') ? path.relative(root, path.resolve(path.dirname(path.join(root, file)), spec.replace(/\.js$/, '.ts'))) : undefined;
    out.push({ spec, target, typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const allTypes =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, allTypes);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isStringLiteralLike(arg)) add(arg.text, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

const graph = new Map<string, Import[]>(sourceFiles().map((f) => [f, importsOf(f)]));
const top = (file: string): string => file.split('/')[0] ?? '';

test('the import graph was read (a parser that finds nothing would pass every rule below)', (t) => {
  t.true(graph.size > 100, `${graph.size} files`);
  const shared = graph.get('server/job-registry.ts')?.filter((i) => i.target !== undefined && top(i.target) === 'shared') ?? [];
  t.true(shared.length > 0, 'server/job-registry.ts imports shared/');
  t.true(graph.get('cli/main.ts')?.some((i) => i.spec.startsWith('./commands/')) === false, 'cli/main.ts loads commands lazily by a computed path');
  t.true([...graph.values()].flat().some((i) => i.typeOnly), 'type-only imports are recognised');
});

test('shared/ imports no node: module and nothing outside shared/', (t) => {
  const bad: string[] = [];
  for (const [file, imports] of graph) {
    if (top(file) !== 'shared') continue;
    for (const i of imports) {
      if (i.spec.startsWith('node:') || (i.target !== undefined && top(i.target) !== 'shared')) bad.push(`${file} → ${i.spec}`);
    }
  }
  t.deepEqual(bad, []);
});

test('server/ and client/ never import each other; simulations/ imports only shared/', (t) => {
  const forbidden: Record<string, readonly string[]> = { server: ['client', 'cli', 'simulations'], client: ['server', 'cli', 'simulations'], simulations: ['server', 'client', 'cli'] };
  const bad: string[] = [];
  for (const [file, imports] of graph) {
    const not = forbidden[top(file)] ?? [];
    for (const i of imports) if (i.target !== undefined && not.includes(top(i.target))) bad.push(`${file} → ${i.target}`);
  }
  t.deepEqual(bad, []);
});

test('no import cycle at run time', (t) => {
  // Tarjan's strongly connected components over the value (non-type-only) edges.
  const edges = new Map([...graph].map(([f, imports]) => [f, imports.filter((i) => !i.typeOnly && i.target !== undefined && graph.has(i.target)).map((i) => i.target as string)]));
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w !== undefined) {
          onStack.delete(w);
          component.push(w);
        }
      } while (w !== undefined && w !== v);
      if (component.length > 1 || (edges.get(v) ?? []).includes(v)) cycles.push(component.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) connect(v);
  t.deepEqual(cycles, []);
});
